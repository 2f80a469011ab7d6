"""Code that runs inside the modelplane workload images (trainers and the inference server)."""
