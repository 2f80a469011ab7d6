"""`make demo` and the dev servers (moto S3, Redis) that the demo and the tests start; no image copies this package."""
