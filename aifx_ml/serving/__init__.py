"""The prediction service and its HTTP API (FastAPI): predictions, A/B tests, monitoring."""
