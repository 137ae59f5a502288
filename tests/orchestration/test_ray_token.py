"""A local Ray that cannot write its token file (a read-only HOME): one line with the fix (issue 30)."""
from __future__ import annotations

import io

import pytest
import ray
from rich.console import Console

from connectome.errors import ConfigError
from connectome.orchestration.session import ray_session, token_not_written


def test_a_token_file_ray_cannot_write_is_one_line_with_the_fix(tmp_path, monkeypatch, no_ray):
    # no_ray: a process still connected to the session's head would join it and start no local Ray
    from ray._private.authentication.authentication_token_setup import generate_and_save_token

    (tmp_path / "home").write_text("")  # HOME is a file: ~/.ray cannot be created, as on a read-only HOME
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # Ray's own writer, as ray.init calls it when token authentication is on and no token exists
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: generate_and_save_token())
    with pytest.raises(ConfigError) as err:
        with ray_session(None, False, Console(file=io.StringIO())):
            pass
    text = str(err.value)
    assert text.startswith(f"Ray could not write its authentication token {tmp_path / 'home' / '.ray'}")
    assert "RAY_AUTH_TOKEN=<token> or RAY_AUTH_TOKEN_PATH=<file>" in text and "\n" not in text


def test_other_file_errors_are_left_as_they_are():
    assert token_not_written(OSError(28, "No space left on device", "/tmp/elsewhere")) is None
