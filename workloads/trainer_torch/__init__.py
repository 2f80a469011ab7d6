"""Decoder-only LM trainer run under torchrun (DDP), with S3 data shards, checkpoints and exports.

- `python -m workloads.trainer_torch.prepare`: local text files to token shards plus a manifest in S3.
- `torchrun --nproc_per_node N -m workloads.trainer_torch ...`: train, checkpoint, resume, export.
"""
