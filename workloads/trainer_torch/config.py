"""The trainer's settings: flags, their `MODELPLANE_TRAIN_*` environment fallbacks, and up-front validation.

Built on `workloads.common.settings`: every field is a flag (`--data`) and a variable
(`MODELPLANE_TRAIN_DATA`), so a TrainJob can pass S3 URIs through env and the command line stays
the same across stacks; a flag wins over the env. Values left unset are derived here (sequence length
from the preset, gradient accumulation from `--global-batch`, the final learning rate from `--lr`), and
every problem is reported at once. Imports no torch, so a bad flag fails before torch loads.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from workloads.common.settings import S3UriSetting, WorkloadSettings
from workloads.common.uri import S3Uri
from workloads.common.vocab import TRAIN_ENV_PREFIX
from workloads.lm.memory import GIB, Checkpointing, Parallel, Precision, default_parallel, fit_problem
from workloads.lm.presets import PRESETS, GPTConfig, default_seq_len, preset_config

WARMUP_CAP: Final = 100
"""Most warmup steps --warmup-steps defaults to; shorter runs warm up for a tenth of --max-steps."""


def _context_world_size(context: Any) -> int:
    """torchrun's world size, passed to `parse` as validation context (1 without one)."""
    return int((context or {}).get("world_size", 1))


class TrainSettings(WorkloadSettings):
    """Everything `python -m workloads.trainer_torch` (under torchrun) can be configured with."""

    env_prefix: ClassVar[str] = TRAIN_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.trainer_torch"

    data: S3UriSetting
    """S3 URI of the dataset `prepare` wrote: the prefix it printed, or its manifest.json. Required."""
    checkpoints: S3UriSetting
    """S3 prefix under which `step-NNNNNNNNN/` checkpoints are written. Required."""
    export: S3UriSetting | None = None
    """S3 prefix for the final Hugging Face-style export. Defaults to none (no export)."""
    model: str = "small"
    """Model preset. Defaults to small. Valid values: tiny, mini, small, medium, large, 1b, 7b."""
    vocab_size: int = Field(default=None, ge=1, le=65536, validate_default=True)
    """Embedding rows. Defaults to the preset's (320, byte-level data); set it to at least the data's tokenizer
    id_limit for Hugging Face-tokenized data, rounded up to a multiple of 64 for speed."""
    seq_len: int = Field(default=None, ge=1, validate_default=True)
    """Tokens per training sequence. Defaults to the preset's max_seq_len; at most that."""
    micro_batch: int = Field(8, ge=1)
    """Sequences per rank per forward/backward pass. Defaults to 8."""
    global_batch: int | None = Field(None, ge=1)
    """Sequences per optimizer step across all ranks; must divide by --micro-batch x world size.
    Defaults to none (--grad-accum decides)."""
    grad_accum: int = Field(default=None, ge=1, validate_default=True)
    """Micro-batches accumulated per optimizer step. Defaults to 1, or derived from --global-batch."""
    max_steps: int = Field(1000, ge=1)
    """Optimizer steps to train for. Defaults to 1000."""
    lr: float = Field(6e-4, gt=0)
    """Peak learning rate. Defaults to 6e-4."""
    min_lr: float = Field(default=None, ge=0, validate_default=True)
    """Learning rate at the end of the cosine decay, between 0 and --lr. Defaults to --lr / 10."""
    warmup_steps: int = Field(default=None, ge=0, validate_default=True)
    """Linear warmup steps, at most --max-steps. Defaults to a tenth of --max-steps, at most 100."""
    weight_decay: float = Field(0.1, ge=0)
    """AdamW weight decay on matrices. Defaults to 0.1."""
    grad_clip: float = Field(1.0, ge=0)
    """Max global gradient norm; 0 disables clipping. Defaults to 1.0."""
    checkpoint_every: int = Field(500, ge=1)
    """Steps between checkpoints (the last step is always checkpointed). Defaults to 500."""
    keep_last: int = Field(3, ge=1)
    """Committed checkpoints to keep. Defaults to 3."""
    seed: int = Field(1337, ge=0)
    """Seed for init, per-rank RNGs and the data order. Defaults to 1337."""
    compile: bool = False
    """Compile each transformer block with torch.compile. Defaults to off."""
    parallel: Parallel = Field(default=None, validate_default=True)
    """How ranks share the model: ddp replicates it, fsdp shards parameters, gradients and optimizer state (FSDP2).
    Defaults to fsdp when the world size is > 1, else ddp. Valid values: ddp, fsdp."""
    activation_checkpointing: Checkpointing = "none"
    """Recompute activations in backward to save memory: full = every block, selective = every other block.
    Defaults to none. Valid values: none, full, selective."""
    async_checkpoint: bool = False
    """Upload checkpoints in the background (DCP async_save); the loop waits only for the copy to host memory
    and for the previous upload. Defaults to off."""

    metrics_port: int = Field(0, ge=0, le=65535)
    """Prometheus /metrics port on rank 0; 0 disables it. Defaults to 0."""
    peak_tflops: float | None = Field(None, gt=0)
    """Per-device peak TFLOP/s for MFU. Defaults to the device table's value."""
    collective_timeout: int = Field(1800, ge=1)
    """Seconds a collective (all-reduce, barrier, broadcast) waits for the other ranks before this rank fails, so a
    hung rank fails the job instead of holding every device; must exceed the longest wait of one rank for another
    (a checkpoint save, node-local rank 0's data download). Defaults to 1800."""
    sigterm_grace: float = Field(100.0, gt=0)
    """Seconds after SIGTERM to finish the step and commit a checkpoint (keep below torchrun's
    --shutdown-timeout and the pod's terminationGracePeriodSeconds). Defaults to 100."""
    log_every: int = Field(10, ge=1)
    """Steps between progress lines. Defaults to 10."""
    eval_batches: int = Field(8, ge=0)
    """Validation micro-batches per rank after training; 0 skips evaluation. Defaults to 8."""
    local_dir: Path = Path(tempfile.gettempdir()) / "modelplane-trainer"
    """Node-local scratch for data shards. Defaults to $TMPDIR/modelplane-trainer."""
    device_memory_gb: float | None = Field(None, gt=0)
    """Memory per device, in GiB, that the up-front memory estimate must fit. Defaults to the GPU's total memory;
    on CPU, no check."""

    _world_size: int = PrivateAttr(1)

    def model_post_init(self, context: Any, /) -> None:
        """Keep torchrun's world size (passed as validation context) for the derived batch sizes."""
        self._world_size = _context_world_size(context)

    @field_validator("parallel", mode="before")
    @classmethod
    def _default_parallel(cls, value: Any, info: ValidationInfo) -> Any:
        return value if value is not None else default_parallel(_context_world_size(info.context))

    @field_validator("export")
    @classmethod
    def _check_export(cls, value: S3Uri | None) -> S3Uri | None:
        # The export replaces everything under its prefix (stale shards would shadow new weights), so a bucket
        # root would wipe the bucket.
        if value is not None and not value.key.strip("/"):
            raise ValueError("needs a prefix under the bucket, e.g. s3://BUCKET/NAME/VERSION (the export replaces "
                             "everything under it)")
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown preset; valid values: {', '.join(PRESETS)}")
        return value

    @field_validator("vocab_size", mode="before")
    @classmethod
    def _default_vocab_size(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        model = info.data.get("model", "")
        return PRESETS[model].vocab_size if model in PRESETS else 1

    @field_validator("seq_len", mode="before")
    @classmethod
    def _default_seq_len(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        model = info.data.get("model", "")
        return default_seq_len(model) if model in PRESETS else 1

    @field_validator("seq_len")
    @classmethod
    def _check_seq_len(cls, value: int, info: ValidationInfo) -> int:
        model = info.data.get("model", "")
        if model in PRESETS and value > PRESETS[model].max_seq_len:
            raise ValueError(f"exceeds the {model!r} preset's max_seq_len {PRESETS[model].max_seq_len}")
        return value

    @field_validator("global_batch")
    @classmethod
    def _check_global_batch(cls, value: int | None, info: ValidationInfo) -> int | None:
        micro_batch = info.data.get("micro_batch")
        if value is None or micro_batch is None:
            return value
        world_size = _context_world_size(info.context)
        per_pass = micro_batch * world_size
        if value % per_pass:
            raise ValueError(f"is not divisible by --micro-batch x world size ({micro_batch} x {world_size} "
                             f"= {per_pass}); use a multiple of {per_pass}")
        return value

    @field_validator("grad_accum", mode="before")
    @classmethod
    def _default_grad_accum(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        return cls._derived_grad_accum(info) or 1

    @field_validator("grad_accum")
    @classmethod
    def _check_grad_accum(cls, value: int, info: ValidationInfo) -> int:
        derived = cls._derived_grad_accum(info)
        if derived is not None and value != derived:
            raise ValueError(f"contradicts --global-batch {info.data['global_batch']} at world size "
                             f"{_context_world_size(info.context)} (which needs {derived}); pass only one of them")
        return value

    @staticmethod
    def _derived_grad_accum(info: ValidationInfo) -> int | None:
        """Micro-batches per step that --global-batch implies, when it is set and valid."""
        global_batch, micro_batch = info.data.get("global_batch"), info.data.get("micro_batch")
        if global_batch is None or micro_batch is None:
            return None
        return int(global_batch // (micro_batch * _context_world_size(info.context)))

    @field_validator("min_lr", mode="before")
    @classmethod
    def _default_min_lr(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        return info.data["lr"] / 10 if "lr" in info.data else 0.0

    @field_validator("min_lr")
    @classmethod
    def _check_min_lr(cls, value: float, info: ValidationInfo) -> float:
        if "lr" in info.data and value > info.data["lr"]:
            raise ValueError(f"must be between 0 and --lr {info.data['lr']}")
        return value

    @field_validator("warmup_steps", mode="before")
    @classmethod
    def _default_warmup(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        # A tenth of a short run, so a smoke run (--max-steps 5) needs no other flag.
        return min(WARMUP_CAP, info.data.get("max_steps", cls.model_fields["max_steps"].default) // 10)

    @field_validator("warmup_steps")
    @classmethod
    def _check_warmup(cls, value: int, info: ValidationInfo) -> int:
        if "max_steps" in info.data and value > info.data["max_steps"]:
            raise ValueError(f"must be <= --max-steps {info.data['max_steps']}")
        return value

    @property
    def preset(self) -> GPTConfig:
        """The model's shape: the --model preset with --vocab-size embedding rows."""
        return preset_config(self.model, self.vocab_size)

    @property
    def world_size(self) -> int:
        """Ranks in the job (torchrun's WORLD_SIZE, given to `parse` as context)."""
        return self._world_size

    @property
    def sequences_per_step(self) -> int:
        """Sequences per optimizer step across all ranks (--global-batch when set)."""
        return self.micro_batch * self.grad_accum * self.world_size

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step across all ranks."""
        return self.sequences_per_step * self.seq_len

    def memory_problem(self, device: str, device_bytes: int | None, precision: Precision) -> str | None:
        """Why a rank cannot fit --device-memory-gb (else `device_bytes`), with the estimate and the fix; None if it fits.

        `device_bytes` is the GPU's total memory, None on CPU (no CUDA context to count). No limit (CPU
        without --device-memory-gb) means no check.
        """
        limit = int(self.device_memory_gb * GIB) if self.device_memory_gb is not None else device_bytes
        if limit is None:
            return None
        problem = fit_problem(self.model, device_bytes=limit, device=device, parallel=self.parallel,
                              world_size=self.world_size, micro_batch=self.micro_batch, seq_len=self.seq_len,
                              precision=precision, checkpointing=self.activation_checkpointing,
                              cuda=device_bytes is not None, vocab_size=self.vocab_size)
        return f"--model: does not fit in memory: {problem}" if problem else None


def parse_config(argv: Sequence[str] | None = None, *, world_size: int = 1,
                 environ: Mapping[str, str] | None = None) -> TrainSettings:
    """Settings from flags over `MODELPLANE_TRAIN_*` env at `world_size` ranks; `SettingsError` lists every problem."""
    return TrainSettings.parse(argv, environ, context={"world_size": world_size})
