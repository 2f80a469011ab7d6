"""The `vllm serve` arguments InferenceService renders parse with vLLM 0.31.0's own CLI parser (`.venv-vllm`).

The render runs here (the infra venv); vLLM's `make_arg_parser` runs in the vLLM venv, which also checks the
load format against vLLM's loader registry (argparse takes any string there).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from infra import versions
from infra.config.workloads import InferenceServiceConfig
from infra.k8s.inference import InferenceService
from infra.review.engine import render_program
from tests.support.vllm import VLLM_PYTHON
from workloads.common import vocab

_PARSE = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.model_executor.model_loader import _LOAD_FORMAT_TO_MODEL_LOADER
from vllm.utils.argparse_utils import FlexibleArgumentParser
out = []
for args in json.loads(sys.stdin.read()):
    parsed = vars(make_arg_parser(FlexibleArgumentParser()).parse_args(args))
    assert parsed["load_format"] in _LOAD_FORMAT_TO_MODEL_LOADER, parsed["load_format"]
    out.append({key: parsed[key] for key in ("model_tag", "served_model_name", "port", "dtype", "load_format",
                                             "max_model_len", "tensor_parallel_size", "gpu_memory_utilization",
                                             "enable_prefix_caching")})
print(json.dumps(out))
"""
_KNOWN = """
import json, sys
import vllm.envs
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
names = json.loads(sys.stdin.read())
flags = make_arg_parser(FlexibleArgumentParser())._option_string_actions
print(json.dumps({"unknown_flags": [f for f in names["flags"] if f not in flags],
                  "unknown_vars": [v for v in names["vars"] if v not in vllm.envs.environment_variables]}))
"""
GPU = {"name": "chat", "runtime": "vllm", "model": "lm-small", "gpus": 2, "gpuPool": "infer", "memory": "64Gi",
       "vllm": {"preset": "7b", "maxModelLen": 2048, "dtype": "bfloat16", "gpuMemoryUtilization": 0.85}}
CPU = {"name": "mini", "runtime": "vllm", "model": "mini", "memory": "4Gi", "vllm": {"preset": "mini"}}


def _args(entry: dict[str, Any], image: str) -> list[str]:
    svc = InferenceServiceConfig.model_validate(entry)
    graph = render_program("test", lambda: InferenceService(
        svc.name, svc, image=image, gateway_image="ghcr.io/modelplane/serve:0.1.0", namespace="inference",
        service_account="model-server", model_uri=f"s3://models/{svc.model}/", allowed_principals=[]) and None)
    deployment = graph.one("kubernetes:apps/v1:Deployment", f"{svc.name}-vllm-stable").inputs
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def _parse(argument_lists: list[list[str]]) -> list[dict[str, Any]]:
    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} not found: run `make setup-vllm`")
    result = subprocess.run([str(VLLM_PYTHON), "-c", _PARSE], input=json.dumps(argument_lists), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def test_rendered_vllm_arguments_parse_with_vllms_own_parser() -> None:
    gpu, cpu = _parse([_args(GPU, versions.VLLM_IMAGE), _args(CPU, versions.VLLM_CPU_IMAGE)])
    assert gpu == {"model_tag": "s3://models/lm-small/", "served_model_name": ["chat"], "port": 8000,
                   "dtype": "bfloat16", "load_format": "runai_streamer", "max_model_len": 2048,
                   "tensor_parallel_size": 2, "gpu_memory_utilization": 0.85, "enable_prefix_caching": True}
    assert (cpu["model_tag"], cpu["load_format"], cpu["enable_prefix_caching"]) == ("/models/mini", "auto", True)


def test_vllms_parser_rejects_a_flag_it_does_not_have() -> None:
    # The control: the parser run above does refuse what vLLM 0.31.0 lacks.
    with pytest.raises(AssertionError, match="unrecognized arguments: --tensor-parallel-degree"):
        _parse([["/models/x", "--tensor-parallel-degree", "2"]])


def test_every_vllm_name_we_declare_is_vllms_own() -> None:
    # workloads/common/vocab.py declares the flags and variables once, for the platform and the dev server alike.
    names = {"flags": [v for k, v in vars(vocab).items() if k.startswith("VLLM_") and k.endswith("_FLAG")],
             "vars": [v for k, v in vars(vocab).items() if k.startswith("VLLM_") and k.endswith("_VAR")]}
    assert len(names["flags"]) >= 12 and len(names["vars"]) >= 4, names
    result = subprocess.run([str(VLLM_PYTHON), "-c", _KNOWN], input=json.dumps(names), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"unknown_flags": [], "unknown_vars": []}
