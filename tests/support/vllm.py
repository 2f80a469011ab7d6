"""A real vLLM OpenAI-compatible server (CPU build, `.venv-vllm`) for any test, and the model it serves.

The launcher lives in `workloads.demo.devservers` (`make demo` starts vLLM too, and workloads never import tests);
this module re-exports it and adds `write_mini_export`: our export (`workloads.lm.export.save_export`) of a randomly
initialised `mini` preset, the folder the trainer writes, loaded by vLLM as the `GPT2LMHeadModel` it is. `mini` has
32-wide heads; vLLM's CPU attention rejects 16 (`tiny`) and supports 32 and 64.
"""

from __future__ import annotations

from pathlib import Path

from workloads.demo.devservers import MAX_MODEL_LEN, SERVED_MODEL, VLLM_ENV, VLLM_PYTHON, VllmServer, vllm_server

__all__ = ["MAX_MODEL_LEN", "SERVED_MODEL", "VLLM_ENV", "VLLM_PYTHON", "VllmServer", "vllm_server", "write_mini_export"]


def write_mini_export(folder: Path, *, seed: int = 0) -> Path:
    """Write a randomly initialised `mini` GPT as our trainer's Hugging Face export; returns `folder`."""
    # Imported here: tests/conftest.py imports this module, and the infra-only venv has no torch.
    import torch

    from workloads.lm.export import save_export
    from workloads.lm.model import GPT
    from workloads.lm.presets import PRESETS

    torch.manual_seed(seed)
    model = GPT(PRESETS["mini"]).eval()
    with torch.no_grad():
        # A random init's logits are nearly flat, so greedy decoding flips on float noise that depends on what else
        # vLLM batches; a 20x final-norm gain widens every gap far past that noise, keeping greedy runs comparable.
        model.ln_f.weight.mul_(20.0)
    save_export(model, folder)
    return folder
