"""The `aifx` command line: typer commands over the library, rich output, one-line errors."""
