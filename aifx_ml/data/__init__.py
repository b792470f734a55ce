"""Market data: reading, validating, importing, synthesizing and exporting candles."""
