"""End of training: validation loss and the Hugging Face export (workloads.lm.export) that our server and vLLM load."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.functional import cross_entropy

from workloads.common import s3
from workloads.common.uri import S3Uri
from workloads.lm.export import save_export
from workloads.lm.hf_tokenizer import ExportTokenizer
from workloads.lm.layout import MANIFEST_FILE
from workloads.lm.model import GPT
from workloads.trainer_torch import distributed
from workloads.trainer_torch.data import TokenWindows
from workloads.trainer_torch.distributed import DistContext


@torch.no_grad()
def evaluate(model: GPT, windows: TokenWindows, ctx: DistContext, *, micro_batch: int, batches: int,
             autocast: Callable[[], contextlib.AbstractContextManager[Any]]) -> float:
    """Mean token loss over up to `batches` micro-batches per rank of evenly spaced validation windows.

    The windows are fixed (not sampled) so the number is comparable between runs, and no RNG is
    touched, so evaluating never changes what a resumed run would do.
    """
    # A multiple of the world size: under FSDP every rank must run the same number of forward passes.
    count = min(len(windows), batches * micro_batch * ctx.world_size) // ctx.world_size * ctx.world_size
    picks = np.linspace(0, len(windows) - 1, count).astype(np.int64)[ctx.rank :: ctx.world_size]
    totals = torch.zeros(2, dtype=torch.float64, device=ctx.device)
    was_training = model.training
    model.eval()
    for start in range(0, len(picks), micro_batch):
        tokens = torch.from_numpy(windows.batch(picks[start : start + micro_batch])).to(ctx.device)
        with autocast():
            logits = model(tokens[:, :-1])
        loss = cross_entropy(logits.float().view(-1, logits.size(-1)), tokens[:, 1:].reshape(-1), reduction="sum")
        totals += torch.stack([loss.double(), torch.tensor(tokens[:, 1:].numel(), dtype=torch.float64,
                                                           device=ctx.device)])
    model.train(was_training)
    distributed.all_reduce_sum(totals)
    return float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")


def upload_export(model: GPT, uri: S3Uri, meta: dict[str, Any], client: Any | None = None, *,
                  tokenizer: ExportTokenizer | None = None) -> None:
    """Write `model` and the data's `tokenizer` (default: the byte tokenizer) with `save_export`, upload, manifest last.

    Any previous manifest is deleted first, so while the new files land a reader sees an
    incomplete export (which it refuses) rather than an old manifest over new weights; then every
    other file of the export's folder that the new export does not write, because a leftover
    `model.safetensors` or index would shadow the new weights. Subfolders are left alone: readers
    (ours, transformers, vLLM) look at the folder's own files only, and a subfolder may hold
    other exports (`name/` next to `name/1/`).
    """
    client = client or s3.client()
    cpu_model = model
    if next(model.parameters()).device.type != "cpu":
        cpu_model = GPT(model.config)
        cpu_model.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    if not uri.key.strip("/"):  # the settings refuse it too; deleting a whole bucket must never happen by accident
        raise ValueError(f"refusing to export to the bucket root {uri}: the export replaces everything under its prefix")
    with tempfile.TemporaryDirectory(prefix="modelplane-export-") as tmp:
        folder = Path(tmp)
        files = save_export(cpu_model, folder, tokenizer=tokenizer, meta=meta)
        s3.retrying(client.delete_object)(Bucket=uri.bucket, Key=uri.join(MANIFEST_FILE).key)
        new_keys = {uri.join(name).key for name in files}
        # The prefix as a folder, so models/a never touches models/ab, and only its own files, not its subfolders'.
        folder_prefix = uri.key.rstrip("/") + "/"
        for key in s3.list_keys(S3Uri(uri.bucket, folder_prefix), client):
            if key not in new_keys and "/" not in key.removeprefix(folder_prefix):
                s3.retrying(client.delete_object)(Bucket=uri.bucket, Key=key)
        # save_export lists the manifest last, so it lands only after every file it vouches for.
        for name in files:
            s3.upload_file(folder / name, uri.join(name), client)
