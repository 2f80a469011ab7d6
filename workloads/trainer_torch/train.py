"""The training loop: data, model, DDP or FSDP, resume, steps, checkpoints, evaluation and export."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.functional import cross_entropy

from workloads.common import s3
from workloads.common.logs import log_event
from workloads.lm.model import GPT
from workloads.trainer_torch import distributed
from workloads.trainer_torch.checkpoint import Checkpointer, CheckpointError
from workloads.trainer_torch.config import TrainSettings
from workloads.trainer_torch.data import (
    DataError,
    TokenWindows,
    WindowSampler,
    cached_split,
    fetch_split,
    rank_start,
    read_manifest,
)
from workloads.trainer_torch.distributed import DistContext
from workloads.trainer_torch.exporting import evaluate, upload_export
from workloads.trainer_torch.host_memory import retain_freed_memory
from workloads.trainer_torch.lifecycle import EXIT_PREEMPTED, FaultInjector, StopSignal
from workloads.trainer_torch.parallel import ParallelModel
from workloads.trainer_torch.schedule import WarmupCosine, build_scheduler
from workloads.trainer_torch.telemetry import Throughput, TrainMetrics, mfu, peak_flops_per_device, progress_line


@dataclass
class Progress:
    """Where training stands; `consumed` is the data position saved in checkpoints."""

    step: int = 0
    """Completed optimizer steps."""
    consumed: int = 0
    """Windows consumed across all ranks (the sampler's stream position)."""
    tokens: int = 0
    """Tokens consumed across all ranks."""


class Trainer:
    """One rank's trainer. `run()` returns the process exit code."""

    def __init__(self, cfg: TrainSettings, ctx: DistContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.client = s3.client()
        self.stop = StopSignal(cfg.sigterm_grace)
        self.fault = FaultInjector.from_env(ctx.rank)
        self.metrics = TrainMetrics() if ctx.is_main else None
        self.checkpointer = Checkpointer(cfg.checkpoints, ctx, keep_last=cfg.keep_last,
                                         async_save=cfg.async_checkpoint, client=self.client,
                                         timeout_s=cfg.collective_timeout,
                                         on_commit=self.metrics.on_checkpoint if self.metrics else None)
        self.schedule = WarmupCosine(cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        cuda = ctx.device.type == "cuda"
        # bf16 autocast on GPUs (no loss scaling needed, unlike fp16); full fp32 on CPU.
        self.autocast: Any = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
        # On CPU the step's tensors live in malloc's memory; on GPUs the caching allocator already keeps them.
        self.host_memory_retained = not cuda and retain_freed_memory()
        # Ranks agree on stopping every step over a CPU (gloo) group: on GPUs an NCCL all-reduce read back with
        # .item() would make each step wait for the GPU to drain, so it could never queue the next one ahead.
        self.control_group = dist.new_group(backend="gloo", timeout=timedelta(seconds=cfg.collective_timeout)) \
            if cuda and distributed.active() else None

    def run(self) -> int:
        """Train to `--max-steps` (or until SIGTERM), then evaluate and export."""
        try:
            return self._run()
        finally:
            # Before the entry point leaves the process group: the background save uses a group of its own.
            self.checkpointer.close()
            if self.control_group is not None:
                dist.destroy_process_group(self.control_group)

    def _run(self) -> int:
        if self.metrics is not None and self.cfg.metrics_port:
            self.metrics.serve(self.cfg.metrics_port)
        self._load_data()
        self._build_model()
        progress = self._resume()
        peak, peak_source = (0.0, "")
        if self.ctx.is_main:
            peak, peak_source = peak_flops_per_device(self.ctx.device, self.cfg.peak_tflops)
        self._log_start(progress, peak, peak_source)
        # Only from here on is there progress worth a checkpoint; before this, SIGTERM simply ends the process.
        self.stop.install()
        meter = Throughput()
        flops_per_token = self.cfg.preset.flops_per_token(self.cfg.seq_len)
        while progress.step < self.cfg.max_steps:
            loss, lr, grad_norm = self._step(progress)
            stop = self._stop_agreed()
            # Summed on the device; read (a wait for the GPU) only on the steps that log or checkpoint it.
            distributed.all_reduce_sum(loss)
            progress.step += 1
            progress.consumed += self.cfg.sequences_per_step
            progress.tokens += self.cfg.tokens_per_step
            meter.add(self.cfg.tokens_per_step)
            self.fault.after_step(progress.step)
            log = self.ctx.is_main and (progress.step == 1 or progress.step % self.cfg.log_every == 0
                                        or progress.step == self.cfg.max_steps or stop)
            save = stop or progress.step % self.cfg.checkpoint_every == 0 or progress.step == self.cfg.max_steps
            global_loss = loss.item() / self.ctx.world_size if log or save else None
            if self.metrics is not None:
                self.metrics.on_step(progress.step, self.cfg.tokens_per_step, global_loss)
            if log and global_loss is not None:
                tokens_per_s, step_s = meter.report()
                ratio = mfu(flops_per_token, tokens_per_s, peak * self.ctx.world_size)
                self._log_step(progress, global_loss, lr, float(grad_norm), tokens_per_s, ratio, step_s)
            if stop:
                log_event("stopping", rank=self.ctx.rank, step=progress.step, signal=self.stop.signal_name,
                          grace_s=self.cfg.sigterm_grace)
            if save and global_loss is not None:
                meter.exclude(self._checkpoint(progress, global_loss))
            if stop:
                self.checkpointer.wait()
                self.stop.disarm()
                distributed.barrier()  # nobody exits (and trips torchrun) before rank 0 committed
                log_event("preempted", rank=self.ctx.rank, step=progress.step, exit_code=EXIT_PREEMPTED)
                return EXIT_PREEMPTED
        self.checkpointer.wait()
        self._finish(progress)
        return 0

    def _stop_agreed(self) -> bool:
        """True when any rank was asked to stop (SIGTERM); every rank calls it once per step."""
        flag = torch.tensor(float(self.stop.requested))
        if distributed.active():
            dist.all_reduce(flag, group=self.control_group)  # None: the default group, gloo on CPU
        return bool(flag.item() > 0)

    def _load_data(self) -> None:
        manifest = read_manifest(self.cfg.data, self.client)
        # Exported with the model; every rank checks it, so a dataset that cannot train fails on all of them at once.
        self.tokenizer = manifest.model_tokenizer(self.cfg.model, self.cfg.vocab_size, self.client)
        splits = ["train"] + (["val"] if self.cfg.eval_batches and manifest.splits.get("val") else [])
        cache = self.cfg.local_dir / "shards"
        # One download per node into a content-addressed cache; the other local ranks wait for it.
        if self.ctx.is_local_main:
            for split in splits:
                fetch_split(manifest, split, cache, self.client)
        distributed.barrier()
        self.train_windows = TokenWindows(cached_split(manifest, "train", cache), self.cfg.seq_len)
        if len(self.train_windows) == 0:
            raise DataError(f"--seq-len: no train shard in {manifest.uri} holds more than {self.cfg.seq_len} tokens; "
                            "lower --seq-len or prepare with a larger --shard-tokens")
        self.sampler = WindowSampler(len(self.train_windows), self.cfg.seed)
        self.val_windows = TokenWindows(cached_split(manifest, "val", cache), self.cfg.seq_len) \
            if "val" in splits else None

    def _build_model(self) -> None:
        distributed.seed_all(self.cfg.seed)  # identical initial weights on every rank
        # Built on the CPU; ParallelModel places it (under FSDP one unit at a time, never whole on the device).
        self.model = GPT(self.cfg.preset)
        # Shard (or replicate) before the optimizer exists: under FSDP it must hold the sharded parameters.
        self.parallel = ParallelModel(self.model, self.ctx, mode=self.cfg.parallel,
                                 activation_checkpointing=self.cfg.activation_checkpointing,
                                 compile_blocks=self.cfg.compile)
        matrices = [p for p in self.model.parameters() if p.dim() >= 2]
        vectors = [p for p in self.model.parameters() if p.dim() < 2]
        # Decay only matrices: decaying biases and LayerNorm gains hurts and buys no regularisation.
        groups = [{"params": matrices, "weight_decay": self.cfg.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
        # Fused: one kernel over every parameter on CPU too (torch >= 2.4), not AdamW's per-tensor Python loop.
        self.optimizer = torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
        self.group_decay = [group["weight_decay"] for group in groups]
        """Each parameter group's weight decay from the flags, reapplied over a resumed optimizer's saved values."""
        self.scheduler = build_scheduler(self.optimizer, self.schedule)

    def _resume(self) -> Progress:
        step = self.checkpointer.latest()
        if step is None:
            distributed.seed_all(distributed.rank_seed(self.cfg.seed, self.ctx.rank))
            return Progress()
        state = self.checkpointer.read_state(step)
        self._check_compatible(step, state)
        rng = self.checkpointer.load(step, self.model, self.optimizer)
        sched = dict(state["scheduler"])
        # The flags define the schedule (so --max-steps can be extended on resume); only the step carries over.
        sched["lr_lambdas"] = [None] * len(self.optimizer.param_groups)
        sched["base_lrs"] = [self.cfg.lr] * len(self.optimizer.param_groups)
        self.scheduler.load_state_dict(sched)
        for group, base, decay in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.group_decay,
                                      strict=True):
            group["lr"] = base * self.schedule(self.scheduler.last_epoch)  # LambdaLR's own formula, bit for bit
            group["weight_decay"] = decay  # load_state_dict restored the saved one: --weight-decay wins, as --lr does
        if rng is not None:
            distributed.set_rng_state(rng)
        else:
            distributed.seed_all(distributed.rank_seed(self.cfg.seed + step, self.ctx.rank))
        log_event("resumed", rank=self.ctx.rank, step=step, consumed=state["consumed"],
                  rng_restored=rng is not None, checkpoint=str(self.checkpointer.step_uri(step)))
        return Progress(step=step, consumed=int(state["consumed"]), tokens=int(state["tokens"]))

    def _check_compatible(self, step: int, state: dict[str, Any]) -> None:
        where = self.checkpointer.step_uri(step)
        saved, expected = state["model_config"], self.cfg.preset.to_dict()
        if saved != expected and saved | {"vocab_size": self.cfg.vocab_size} == expected:
            raise CheckpointError(f"--vocab-size: {where} holds a model with {saved['vocab_size']} embedding rows, "
                                  f"not {self.cfg.vocab_size}; use --vocab-size {saved['vocab_size']} or a new "
                                  "--checkpoints prefix")
        if saved != expected:
            raise CheckpointError(f"--model: {where} holds a {state['model']!r} model, not {self.cfg.model!r}; "
                                  "use the same preset or a new --checkpoints prefix")
        if state["seq_len"] != self.cfg.seq_len:
            raise CheckpointError(f"--seq-len: {where} was trained with --seq-len {state['seq_len']} (got "
                                  f"{self.cfg.seq_len}); the saved data position counts windows of that length")
        if state["seed"] != self.cfg.seed:
            raise CheckpointError(f"--seed: {where} was trained with --seed {state['seed']} (got {self.cfg.seed}); "
                                  "the saved data position is a place in that seed's data order: resume with "
                                  f"--seed {state['seed']} or start a new --checkpoints prefix")
        if state["world_size"] != self.ctx.world_size:
            log_event("world_size_changed", rank=self.ctx.rank, checkpoint=state["world_size"],
                      now=self.ctx.world_size)

    def _batch(self, progress: Progress, micro_step: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = rank_start(progress.consumed, micro_step, self.ctx.rank, self.ctx.world_size, self.cfg.micro_batch)
        tokens = torch.from_numpy(self.train_windows.batch(self.sampler.take(start, self.cfg.micro_batch)))
        if self.ctx.device.type == "cuda":
            tokens = tokens.pin_memory().to(self.ctx.device, non_blocking=True)
        return tokens[:, :-1], tokens[:, 1:]

    def _step(self, progress: Progress) -> tuple[torch.Tensor, float, torch.Tensor]:
        """One optimizer step over `grad_accum` micro-batches; returns (mean local loss, lr used, grad norm)."""
        self.model.train()
        total = torch.zeros((), device=self.ctx.device)
        for micro in range(self.cfg.grad_accum):
            inputs, targets = self._batch(progress, micro)
            # DDP reduces only on the last micro-batch (earlier ones accumulate locally); FSDP on every one.
            with self.parallel.gradient_sync(micro == self.cfg.grad_accum - 1):
                with self.autocast():
                    logits = self.parallel.forward(inputs)
                    loss = cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
                (loss / self.cfg.grad_accum).backward()
            total += loss.detach().float()
        grad_norm = torch.zeros((), device=self.ctx.device)
        if self.cfg.grad_clip > 0:
            grad_norm = self.parallel.clip_grad_norm(self.cfg.grad_clip)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / self.cfg.grad_accum, lr, grad_norm

    def _checkpoint(self, progress: Progress, loss: float) -> float:
        state = {
            "step": progress.step, "consumed": progress.consumed, "tokens": progress.tokens, "loss": loss,
            "world_size": self.ctx.world_size, "global_batch": self.cfg.sequences_per_step, "seq_len": self.cfg.seq_len,
            "model": self.cfg.model, "model_config": self.cfg.preset.to_dict(), "seed": self.cfg.seed,
            "data": str(self.cfg.data), "saved_at": round(time.time(), 3), "parallel": self.cfg.parallel,
            "scheduler": self.scheduler.state_dict(),
        }
        duration = self.checkpointer.save(progress.step, self.model, self.optimizer, state=state,
                                          rng=distributed.rng_state())
        if self.metrics is not None:
            self.metrics.on_save_wait(duration)
            log_event("checkpoint", step=progress.step, duration_s=round(duration, 3),
                      uri=str(self.checkpointer.step_uri(progress.step)))
        return duration

    def _finish(self, progress: Progress) -> None:
        val_loss = None
        if self.val_windows is not None and len(self.val_windows):
            val_loss = evaluate(self.model, self.val_windows, self.ctx, micro_batch=self.cfg.micro_batch,
                                batches=self.cfg.eval_batches, autocast=self.autocast)
        full_model = self.parallel.full_model() if self.cfg.export is not None else None
        if self.ctx.is_main:
            log_event("done", step=progress.step, tokens=progress.tokens, val_loss=val_loss)
            if self.cfg.export is not None and full_model is not None:
                meta = {"step": progress.step, "tokens": progress.tokens, "val_loss": val_loss,
                        "data": str(self.cfg.data), "seq_len": self.cfg.seq_len, "seed": self.cfg.seed,
                        "preset": self.cfg.model}
                upload_export(full_model, self.cfg.export, meta, self.client, tokenizer=self.tokenizer)
                log_event("exported", uri=str(self.cfg.export))
        distributed.barrier()

    def _log_start(self, progress: Progress, peak: float, peak_source: str) -> None:
        if not self.ctx.is_main:
            return
        log_event("start", world_size=self.ctx.world_size, device=str(self.ctx.device), model=self.cfg.model,
                  params=self.cfg.preset.n_params(), seq_len=self.cfg.seq_len,
                  global_batch=self.cfg.sequences_per_step, grad_accum=self.cfg.grad_accum, max_steps=self.cfg.max_steps,
                  start_step=progress.step, windows=len(self.train_windows), peak_flops=peak,
                  peak_source=peak_source, compile=self.cfg.compile, parallel=self.cfg.parallel,
                  activation_checkpointing=self.cfg.activation_checkpointing,
                  async_checkpoint=self.cfg.async_checkpoint, host_memory_retained=self.host_memory_retained)

    def _log_step(self, progress: Progress, loss: float, lr: float, grad_norm: float, tokens_per_s: float,
                  ratio: float, step_s: float) -> None:
        eta = (self.cfg.max_steps - progress.step) * step_s
        epoch = progress.consumed / len(self.train_windows)
        log_event("step", step=progress.step, loss=round(loss, 6), lr=lr, grad_norm=round(grad_norm, 6),
                  tokens=progress.tokens, tokens_per_s=round(tokens_per_s, 1), mfu=round(ratio, 6),
                  epoch=round(epoch, 4), eta_s=round(eta, 1))
        if self.metrics is not None:
            self.metrics.mfu.set(ratio)
            self.metrics.on_window(step_s, self.cfg.checkpoint_every)
        print(progress_line(progress.step, self.cfg.max_steps, loss, lr, tokens_per_s, ratio, eta),
              file=sys.stderr, flush=True)

