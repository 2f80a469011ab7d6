"""The log pipeline's own jobs: the OpenSearch index lifecycle (ISM) policy of the shipped log indices."""
