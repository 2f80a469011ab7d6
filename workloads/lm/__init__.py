"""The decoder-only language model shared by the PyTorch trainer and the inference server."""
