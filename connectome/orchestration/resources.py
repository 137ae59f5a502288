"""`resources.cpu: auto`: how many CPUs each trial gets, chosen from the machine and the work left.

Independent trials scale better than threads inside one trial: on this project's 2-core
reference machine, two 1-thread trials side by side train more images per second than one
2-thread trial (measured by benchmarks/layout.py, see docs/benchmarks.md), and 2 threads per
trial with 2 trials on 2 cores is catastrophic (OpenMP spin-waiting). So "auto" runs as many
trials at once as there are CPUs, and gives the CPUs to fewer trials only when fewer are left
to run than there are CPUs (a single trial on 2 cores gets both). On a cluster (`--address`),
where the driver does not see the workers' CPU counts before it connects, "auto" means 1 CPU.
"""
from __future__ import annotations

from connectome.study.schema import Study
from connectome.training.device_names import auto_cpus, usable_cpus


def local_cpus() -> int:
    """CPUs this process may run on (affinity, not the host's total)."""
    return usable_cpus()


def resolve_resources(study: Study, to_run: int, address: str | None) -> tuple[Study, str | None]:
    """The study with a concrete `resources.cpu`, and a sentence saying what "auto" chose (or None)."""
    if study.resources.cpu != "auto":
        return study, None
    if address:
        cpu, why = 1, "1 CPU per trial on a cluster"
    else:
        cpus = local_cpus()
        cpu = auto_cpus(to_run, cpus)
        at_once = min(to_run, cpus // cpu)
        why = (f"{cpu} CPU{'s' if cpu > 1 else ''} per trial, {at_once} trial{'s' if at_once > 1 else ''} "
               f"at once ({to_run} to run on {cpus} CPUs)")
    resources = study.resources.model_copy(update={"cpu": float(cpu)})
    return study.model_copy(update={"resources": resources}), f"resources.cpu auto: {why}"
