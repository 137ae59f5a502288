"""Orchestration fixtures: the session's shared Ray head and the study helpers of tests/study."""
from study.conftest import ray_head  # noqa: F401 - the fixture, shared with tests/study
