"""A/B tests between two model versions: the statistics that decide them."""
