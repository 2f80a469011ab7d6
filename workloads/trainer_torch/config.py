"""The trainer's flags, their environment fallbacks, and up-front validation.

Every flag can also come from the environment as `MODELPLANE_TRAIN_<FLAG>` (for example
`MODELPLANE_TRAIN_DATA` for `--data`), so a PyTorchJob can pass S3 URIs through env and the
command line stays the same across stacks. A flag on the command line wins over the env.
All problems are collected and reported at once, each naming its flag.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.common.s3 import S3Uri, S3UriError
from workloads.lm.model import PRESETS, GPTConfig

ENV_PREFIX = "MODELPLANE_TRAIN_"


class ConfigError(ValueError):
    """One or more flags are invalid; `errors` holds one message per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Validated trainer settings, with derived values resolved."""

    data: S3Uri
    """The dataset manifest written by `prepare`."""
    checkpoints: S3Uri
    """Prefix under which `step-NNNNNNNNN/` checkpoints are written."""
    export: S3Uri | None
    """Prefix for the final export; None skips the export."""
    model: str
    """Preset name from `workloads.lm.model.PRESETS`."""
    model_config: GPTConfig
    """The preset's shape."""
    seq_len: int
    """Tokens per training sequence."""
    micro_batch: int
    """Sequences per rank per forward/backward pass."""
    grad_accum: int
    """Micro-batches accumulated per optimizer step."""
    world_size: int
    """Ranks in the job (from torchrun's WORLD_SIZE)."""
    max_steps: int
    """Optimizer steps to train for."""
    lr: float
    """Peak learning rate."""
    min_lr: float
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int
    """Linear warmup steps."""
    weight_decay: float
    """AdamW weight decay on matrices."""
    grad_clip: float
    """Max global gradient norm; 0 disables clipping."""
    checkpoint_every: int
    """Steps between checkpoints."""
    keep_last: int
    """Committed checkpoints to keep."""
    seed: int
    """Seed for init, per-rank RNGs and the data order."""
    compile: bool
    """Wrap the model in torch.compile."""
    metrics_port: int
    """Prometheus port on rank 0; 0 disables it."""
    peak_tflops: float | None
    """Per-device peak TFLOP/s for MFU; None looks the device up."""
    sigterm_grace: float
    """Seconds after SIGTERM to commit a checkpoint before giving up."""
    log_every: int
    """Steps between progress lines."""
    eval_batches: int
    """Validation micro-batches per rank at the end; 0 skips evaluation."""
    local_dir: Path
    """Node-local scratch for shards and checkpoint staging."""

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step across all ranks."""
        return self.micro_batch * self.grad_accum * self.world_size

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step across all ranks."""
        return self.global_batch * self.seq_len


def _env(name: str, default: Any) -> Any:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _env_flag(name: str) -> bool:
    return str(_env(name, "")).strip().lower() in {"1", "true", "yes", "on"}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser; defaults come from `MODELPLANE_TRAIN_*` env vars where set."""
    p = argparse.ArgumentParser(prog="python -m workloads.trainer_torch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=_env("data", None), help="S3 URI of the dataset manifest.json from prepare.")
    p.add_argument("--checkpoints", default=_env("checkpoints", None), help="S3 prefix for checkpoints.")
    p.add_argument("--export", default=_env("export", None), help="S3 prefix for the final export (omit to skip).")
    p.add_argument("--model", default=_env("model", "small"), help=f"Model preset: {', '.join(PRESETS)}.")
    p.add_argument("--seq-len", type=int, default=_env("seq-len", None),
                   help="Tokens per sequence. Defaults to the preset's max_seq_len.")
    p.add_argument("--micro-batch", type=int, default=_env("micro-batch", "8"), help="Sequences per rank per pass.")
    p.add_argument("--grad-accum", type=int, default=_env("grad-accum", None),
                   help="Micro-batches per optimizer step. Defaults to 1, or derived from --global-batch.")
    p.add_argument("--global-batch", type=int, default=_env("global-batch", None),
                   help="Sequences per optimizer step across all ranks; must divide by micro-batch x world size.")
    p.add_argument("--max-steps", type=int, default=_env("max-steps", "1000"), help="Optimizer steps to train for.")
    p.add_argument("--lr", type=float, default=_env("lr", "6e-4"), help="Peak learning rate.")
    p.add_argument("--min-lr", type=float, default=_env("min-lr", None),
                   help="Final learning rate of the cosine decay. Defaults to lr / 10.")
    p.add_argument("--warmup-steps", type=int, default=_env("warmup-steps", "100"), help="Linear warmup steps.")
    p.add_argument("--weight-decay", type=float, default=_env("weight-decay", "0.1"), help="AdamW weight decay.")
    p.add_argument("--grad-clip", type=float, default=_env("grad-clip", "1.0"), help="Max gradient norm; 0 = off.")
    p.add_argument("--checkpoint-every", type=int, default=_env("checkpoint-every", "500"),
                   help="Steps between checkpoints (the last step is always checkpointed).")
    p.add_argument("--keep-last", type=int, default=_env("keep-last", "3"), help="Committed checkpoints to keep.")
    p.add_argument("--seed", type=int, default=_env("seed", "1337"), help="Seed for init, RNGs and data order.")
    p.add_argument("--compile", action="store_true", default=_env_flag("compile"), help="Use torch.compile.")
    p.add_argument("--metrics-port", type=int, default=_env("metrics-port", "0"),
                   help="Prometheus /metrics port on rank 0; 0 disables it.")
    p.add_argument("--peak-tflops", type=float, default=_env("peak-tflops", None),
                   help="Per-device peak TFLOP/s for MFU, overriding the device table.")
    p.add_argument("--sigterm-grace", type=float, default=_env("sigterm-grace", "100"),
                   help="Seconds after SIGTERM to finish the step and commit a checkpoint (keep below torchrun's "
                        "--shutdown-timeout and the pod's terminationGracePeriodSeconds).")
    p.add_argument("--log-every", type=int, default=_env("log-every", "10"), help="Steps between progress lines.")
    p.add_argument("--eval-batches", type=int, default=_env("eval-batches", "8"),
                   help="Validation micro-batches per rank after training; 0 skips it.")
    p.add_argument("--local-dir", default=_env("local-dir", os.path.join(tempfile.gettempdir(), "modelplane-trainer")),
                   help="Node-local scratch for data shards and checkpoint staging.")
    return p


def _uri(errors: list[str], value: str | None, flag: str, *, required: bool) -> S3Uri | None:
    if value is None or value == "":
        if required:
            errors.append(f"{flag}: required (an s3://BUCKET/PREFIX URI; or set {ENV_PREFIX}{flag[2:].upper()})")
        return None
    try:
        return S3Uri.parse(value, flag=flag)
    except S3UriError as exc:
        errors.append(str(exc))
        return None


def _positive(errors: list[str], ns: argparse.Namespace, *names: str, minimum: float = 1) -> None:
    for name in names:
        value = getattr(ns, name.replace("-", "_"))
        if value is not None and value < minimum:
            errors.append(f"--{name}: must be >= {minimum:g} (got {value})")


def _resolve_grad_accum(errors: list[str], ns: argparse.Namespace, world_size: int) -> int:
    if ns.global_batch is None:
        return int(ns.grad_accum or 1)
    per_pass = ns.micro_batch * world_size
    if ns.global_batch % per_pass:
        errors.append(f"--global-batch: {ns.global_batch} sequences is not divisible by --micro-batch x world size "
                      f"({ns.micro_batch} x {world_size} = {per_pass}); use a multiple of {per_pass}")
        return 1
    derived = ns.global_batch // per_pass
    if ns.grad_accum is not None and ns.grad_accum != derived:
        errors.append(f"--grad-accum: {ns.grad_accum} contradicts --global-batch {ns.global_batch} at world size "
                      f"{world_size} (which needs {derived}); pass only one of them")
    return derived


def parse_config(argv: Sequence[str] | None = None, *, world_size: int = 1) -> TrainConfig:
    """Parse and validate flags; raise `ConfigError` listing every problem."""
    ns = build_parser().parse_args(argv)
    errors: list[str] = []
    data = _uri(errors, ns.data, "--data", required=True)
    checkpoints = _uri(errors, ns.checkpoints, "--checkpoints", required=True)
    export = _uri(errors, ns.export, "--export", required=False)
    preset = PRESETS.get(ns.model)
    if preset is None:
        errors.append(f"--model: unknown preset {ns.model!r}; valid values: {', '.join(PRESETS)}")
    seq_len = ns.seq_len if ns.seq_len is not None else (preset.max_seq_len if preset else 1)
    if preset is not None and seq_len > preset.max_seq_len:
        errors.append(f"--seq-len: {seq_len} exceeds the {ns.model!r} preset's max_seq_len {preset.max_seq_len}")
    _positive(errors, ns, "seq-len", "micro-batch", "grad-accum", "global-batch", "max-steps", "checkpoint-every",
              "keep-last", "log-every")
    _positive(errors, ns, "warmup-steps", "eval-batches", "metrics-port", "seed", minimum=0)
    if ns.metrics_port > 65535:
        errors.append(f"--metrics-port: must be a TCP port 0..65535 (got {ns.metrics_port})")
    if ns.lr <= 0:
        errors.append(f"--lr: must be > 0 (got {ns.lr})")
    min_lr = ns.min_lr if ns.min_lr is not None else ns.lr / 10
    if not 0 <= min_lr <= ns.lr:
        errors.append(f"--min-lr: must be between 0 and --lr {ns.lr} (got {min_lr})")
    if ns.warmup_steps > ns.max_steps:
        errors.append(f"--warmup-steps: must be <= --max-steps {ns.max_steps} (got {ns.warmup_steps})")
    for name in ("weight_decay", "grad_clip"):
        if getattr(ns, name) < 0:
            errors.append(f"--{name.replace('_', '-')}: must be >= 0 (got {getattr(ns, name)})")
    if ns.peak_tflops is not None and ns.peak_tflops <= 0:
        errors.append(f"--peak-tflops: must be > 0 (got {ns.peak_tflops})")
    if ns.sigterm_grace <= 0:
        errors.append(f"--sigterm-grace: must be > 0 seconds (got {ns.sigterm_grace})")
    grad_accum = _resolve_grad_accum(errors, ns, world_size) if ns.micro_batch >= 1 else 1
    if errors or data is None or checkpoints is None or preset is None:
        raise ConfigError(errors)
    return TrainConfig(
        data=data, checkpoints=checkpoints, export=export, model=ns.model, model_config=preset, seq_len=seq_len,
        micro_batch=ns.micro_batch, grad_accum=grad_accum, world_size=world_size, max_steps=ns.max_steps,
        lr=ns.lr, min_lr=min_lr, warmup_steps=ns.warmup_steps, weight_decay=ns.weight_decay,
        grad_clip=ns.grad_clip, checkpoint_every=ns.checkpoint_every, keep_last=ns.keep_last, seed=ns.seed,
        compile=ns.compile, metrics_port=ns.metrics_port, peak_tflops=ns.peak_tflops,
        sigterm_grace=ns.sigterm_grace, log_every=ns.log_every, eval_batches=ns.eval_batches,
        local_dir=Path(ns.local_dir),
    )
