"""The tables of DESIGN.md, the engine, and schema migrations."""
