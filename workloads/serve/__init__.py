"""The inference server: OpenAI-compatible completions and KServe v2 inference over FastAPI/uvicorn.

Run it with `python -m workloads.serve --model-uri s3://BUCKET/PREFIX`; `--help` lists every flag
and the `MODELPLANE_SERVE_*` environment variable behind it.
"""
