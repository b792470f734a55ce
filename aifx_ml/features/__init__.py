"""Features: technical indicators per candle and fixed-length windows for sequence models."""
