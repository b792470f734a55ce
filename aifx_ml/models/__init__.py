"""Model architectures, by model type, with the configuration that rebuilds them."""
