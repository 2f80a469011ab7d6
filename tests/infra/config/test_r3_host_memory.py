"""A training job's replica must hold, in host memory, the whole fp32 model each of its ranks builds before placing
it on its GPU: below that its pod is OOM-killed before the first step, however well the GPUs fit."""

from __future__ import annotations

import pytest

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.infra.config.test_workloads import JOB, NO_TEAMS, SERVICE
from tests.support.graph import stack_config_with

POOLS = [{"name": "gpu-train", "instanceTypes": ["p5.48xlarge"], "gpuLimit": 16}]
"""One pool of H100s, where a 1b job fits its GPUs with room to spare."""


def _parse(**job: object) -> None:
    raw = stack_config_with("dev", {**NO_TEAMS, "modelplane:gpuPools": POOLS,
                                    "modelplane:training": {"jobs": [{**JOB, **job}]},
                                    "modelplane:inference": {"services": [SERVICE]}})
    parse_config("dev", raw)


def test_eight_ranks_building_a_1b_model_need_more_than_the_default_memory() -> None:
    with pytest.raises(ConfigError) as info:
        _parse(model="1b", gpusPerReplica=8)
    assert ("modelplane:training.jobs[0].memory: 16Gi is not above the 36.16 GiB the replica's 8 rank(s) hold while "
            "building the '1b' model (each initialises all of its fp32 parameters, 4.52 GiB, in host memory before "
            "placing them on its device); raise memory to 37Gi or more, or use fewer gpusPerReplica or a smaller "
            "model") in str(info.value)
    assert "jobs[0].model" not in str(info.value)  # its GPUs are not the problem


def test_enough_memory_for_every_rank_passes() -> None:
    _parse(model="1b", gpusPerReplica=8, memory="37Gi")
    _parse(model="1b", gpusPerReplica=1)
