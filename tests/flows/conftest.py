"""The flows' fixtures (the Prefect API, the replay) live in tests/conftest.py, shared with
the notebook tests."""
