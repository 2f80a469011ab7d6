"""The caching gateway: API keys, a per-key rate limit and the Redis response cache in front of any
OpenAI-compatible runtime (vLLM, our own server).

Run it with `python -m workloads.gateway --upstream http://RUNTIME:PORT`; `--help` lists every flag and the
`MODELPLANE_GATEWAY_*` environment variable behind it.
"""
