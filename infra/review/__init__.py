"""The offline review tools: mock engine, graph, diff, cost, manifests, policy adapter and the CLI."""
