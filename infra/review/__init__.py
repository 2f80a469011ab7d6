"""The offline review tools: graph model, mock engine, project discovery, diff (+ its base render and read
watch), cost, manifests, policy adapter and the CLI."""
