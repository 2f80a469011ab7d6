"""Real servers for tests, on free loopback ports (the same helpers `make demo` uses)."""

from workloads.demo.devservers import (
    RedisServer,
    S3Server,
    aws_test_env,
    free_port,
    redis_binary,
    redis_server,
    s3_server,
    wait_for_port,
)

__all__ = ["RedisServer", "S3Server", "aws_test_env", "free_port", "redis_binary", "redis_server", "s3_server",
           "wait_for_port"]
