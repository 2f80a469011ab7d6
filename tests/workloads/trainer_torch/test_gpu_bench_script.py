"""The prepared GPU benchmark (tests/bench/gpu_trainer.py) runs end to end: its `--smoke` mode on this CPU.

A lent GPU machine gets one short call (docs/benchmarks.md), so the script must not first break there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.workloads.trainer_torch.support import REPO


def test_gpu_bench_smoke_trains_through_the_real_trainer_and_writes_results(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "tests/bench/gpu_trainer.py", "--smoke", "--out", str(tmp_path)],
                          cwd=REPO, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    (run,) = results["runs"]
    assert results["device"] == "cpu"
    assert run["model"] == "tiny" and run["params"] > 0 and run["tokens_per_s"] > 0 and 0 < run["mfu"] < 1
    assert len(run["windows"]) >= 2 and run["loss"] > 0


def test_gpu_bench_refuses_the_gpu_runs_without_a_gpu(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "tests/bench/gpu_trainer.py", "--out", str(tmp_path)], cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    assert not (tmp_path / "results.json").exists()
