"""The real-time recommendation case: user events on Kafka, per-user features in Redis."""
