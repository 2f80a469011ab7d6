"""The TensorFlow trainer: a Keras CNN under `MultiWorkerMirroredStrategy`, exported for TF Serving.

Run it as `python -m workloads.trainer_tf --help`. Modules that import TensorFlow (`train`,
`callbacks`, `convert`, `serving`) are kept apart from the ones that validate flags, `TF_CONFIG`
and S3 (`config`, `data`, `records`, `backup`), so bad input fails before the multi-second TF import.
"""
