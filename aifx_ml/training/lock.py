"""One training run per model type at a time, across processes and machines.

On PostgreSQL an advisory lock (released by the server if the holder dies); on the embedded
SQLite default an exclusive file lock next to the database (released by the OS likewise).
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from aifx_ml.errors import AifxError


class TrainingBusyError(AifxError):
    """Another training run of the same model type holds the lock."""


def _key(model_type: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"aifx-train:{model_type}".encode()).digest()[:8], "big", signed=True
    )


@contextmanager
def training_lock(
    engine: Engine, lock_dir: Path, model_type: str, timeout: float
) -> Iterator[None]:
    """Hold the model type's training lock, waiting up to `timeout` seconds for it."""
    deadline = time.monotonic() + timeout
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            while not conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(model_type)}
            ).scalar():
                if time.monotonic() >= deadline:
                    raise TrainingBusyError(f"another {model_type} training run is in progress")
                time.sleep(1.0)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _key(model_type)})
                conn.commit()
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / f"train-{model_type}.lock").open("w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TrainingBusyError(
                        f"another {model_type} training run is in progress"
                    ) from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
