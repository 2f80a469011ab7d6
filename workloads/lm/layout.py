"""The file layout of an LM export, without torch, so a server can recognise one before importing torch.

An export is a Hugging Face model folder (`GPT2LMHeadModel`) plus our `manifest.json`, written last.
"""

from __future__ import annotations

from typing import Final

CONFIG_FILE: Final = "config.json"
"""The Hugging Face model config (`model_type: gpt2`)."""
WEIGHTS_FILE: Final = "model.safetensors"
"""The weights when they fit one shard."""
WEIGHTS_INDEX_FILE: Final = "model.safetensors.index.json"
"""Which shard holds each tensor, when the weights are sharded."""
GENERATION_CONFIG_FILE: Final = "generation_config.json"
"""Default generation options (BOS/EOS/pad ids) for transformers and vLLM."""
TOKENIZER_FILE: Final = "tokenizer.json"
"""The tokenizer, serialized by the `tokenizers` library."""
TOKENIZER_CONFIG_FILE: Final = "tokenizer_config.json"
"""Tokenizer class, special tokens and chat template for `AutoTokenizer`."""
MANIFEST_FILE: Final = "manifest.json"
"""Checksums of every other file; written last, so its presence means the export is complete."""
MODEL_TYPE: Final = "gpt2"
"""The `model_type` in config.json of every export we write."""
LEGACY_FORMAT: Final = "modelplane-lm/v1"
"""The `format` value in config.json of the private exports written before the Hugging Face layout."""
