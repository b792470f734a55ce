"""Prefect flows: thin compositions of library calls, one file per flow."""
