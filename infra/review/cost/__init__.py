"""Monthly cost estimates from the offline graph and dated price tables."""
