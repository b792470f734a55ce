"""Alembic migrations for every table (`aifx db upgrade` applies them)."""
