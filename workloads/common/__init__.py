"""Pieces shared by every workload image: the settings base, the shared vocabulary, S3 URIs and I/O, metric names, logs.

Nothing here imports torch or TensorFlow, so every image (and the infra code) can import it; `settings`, `uri`
and `vocab` need no boto3 either.
"""
