"""`TF_CONFIG` for a TensorFlow worker that runs as a pod of a JobSet, computed from the pod's own JobSet labels.

The platform runs a TensorFlow job as one JobSet with a replicated job of N single-pod Indexed Jobs and DNS
hostnames on, so worker i answers at `<jobset>-<replicated job>-<i>-0.<jobset>`: JobSet names Job i
`<jobset>-<replicated job>-<i>` (kubernetes-sigs/jobset v0.12.0 pkg/util/placement/placement.go GenJobName), an
Indexed Job's pod has the hostname `<job>-<completion index>`, and the subdomain (JobSet's headless Service)
defaults to the JobSet's name (pkg/controllers/jobset_controller.go GetSubdomain).
The pod gets its labels as env vars (`workloads.common.vocab.JOBSET_ENV`, through the downward API), from which
the worker list and this worker's index follow; worker 0 is the chief, as in MultiWorkerMirroredStrategy
without a chief task. An explicit `TF_CONFIG` wins; with neither, the trainer runs as a single worker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from workloads.common.settings import SettingsError
from workloads.common.vocab import JOBSET_ENV, TF_WORKER_PORT

TF_CONFIG_VAR = "TF_CONFIG"
"""The variable MultiWorkerMirroredStrategy's cluster resolver reads the cluster and this task from."""


def _count(environ: Mapping[str, str], var: str, minimum: int, problems: list[str]) -> int:
    """The whole number in `var`, or `minimum` after recording why it is not one."""
    raw = environ[var].strip()
    if raw.isascii() and raw.isdigit() and int(raw) >= minimum:
        return int(raw)
    problems.append(f"{var}: expected a whole number >= {minimum} from the pod label '{JOBSET_ENV[var]}' "
                    f"(got {environ[var]!r})")
    return minimum


def jobset_tf_config(environ: Mapping[str, str]) -> str | None:
    """The `TF_CONFIG` JSON of this JobSet pod, or None when no JobSet variable is set.

    Raises `SettingsError` naming every missing or empty variable when only some are set, and the variable
    and its value when a number is not one or the index is out of range.
    """
    present = [var for var in JOBSET_ENV if var in environ]
    if not present:
        return None
    missing = [var for var in JOBSET_ENV if not environ.get(var, "").strip()]
    if missing:
        labels = ", ".join(f"{var} <- '{JOBSET_ENV[var]}'" for var in missing)
        raise SettingsError(f"{', '.join(missing)}: missing or empty, so TF_CONFIG cannot be computed from the JobSet "
                            f"pod labels ({labels}); set every one of {', '.join(JOBSET_ENV)} through the downward "
                            "API, or set TF_CONFIG itself")
    name_var, job_var, replicas_var, index_var = JOBSET_ENV  # declared in this order
    name, job = environ[name_var].strip(), environ[job_var].strip()
    problems: list[str] = []
    replicas = _count(environ, replicas_var, 1, problems)
    index = _count(environ, index_var, 0, problems)
    if not problems and index >= replicas:
        problems.append(f"{index_var}: {index} is out of range for {replicas_var} {replicas} "
                        f"(expected 0 to {replicas - 1})")
    if problems:
        raise SettingsError(problems)
    workers = [f"{name}-{job}-{i}-0.{name}:{TF_WORKER_PORT}" for i in range(replicas)]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def resolve_tf_config(environ: Mapping[str, str]) -> str | None:
    """`TF_CONFIG` when it is set and not blank, else the one computed from the JobSet variables, else None."""
    explicit = environ.get(TF_CONFIG_VAR, "")
    return explicit if explicit.strip() else jobset_tf_config(environ)
