"""Pieces shared by every workload image: S3 I/O, metric names and structured logs.

Nothing here imports torch or TensorFlow, so every image (and the infra code) can import it.
"""
