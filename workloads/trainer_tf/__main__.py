"""`python -m workloads.trainer_tf`: the TensorFlow multi-worker trainer (see `workloads.trainer_tf.cli`)."""

from workloads.trainer_tf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
