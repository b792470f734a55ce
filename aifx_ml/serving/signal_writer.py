"""The signal writer: an answered prediction is committed to `trading_signals`, or kept until
it can be.

Rows are committed in rounds (one transaction for everything waiting, at most every
`linger` seconds). A round the database refuses because of one of its rows is retried row by
row: the others are stored, and a row refused alone is logged, counted and handed to
`on_rejected` (the app raises an alert). When the database is away (refused, timed out,
connection lost) the rows stay pending and the round is retried with exponential backoff.
Memory is bounded: beyond `max_buffer` waiting rows, new rows are appended to a JSON-lines
spill file under `spill_dir`, replayed once the database answers again. The replay inserts
only the ids not yet stored (with their events), so a replay interrupted by a crash and run
again stores and announces nothing twice.

A row's shadow answer (`SHADOW`) may still be on its way: a callable that returns it once the
challenger's model call is done, so a caller is answered without waiting for a call whose
result it never sees. The writer resolves it before the row is committed or spilled; a
shadow whose call failed is logged and the served row stored without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Engine

from aifx_ml.db.engine import DATABASE_UNAVAILABLE
from aifx_ml.errors import StoreUnavailableError
from aifx_ml.monitoring.health import error_line
from aifx_ml.monitoring.queries import Family
from aifx_ml.signals import SHADOW, store_absent_signal_rows

log = logging.getLogger(__name__)

Row = dict[str, Any]
SPILL_GLOB = "spill-*.jsonl"
REJECTED_FILE = "rejected.jsonl"
REPLAY_CHUNK = 500  # rows per transaction when a spill file is replayed


@dataclass(frozen=True)
class RejectedRow:
    """A row the database refused on its own: it is not stored (it is logged, and kept in
    `rejected.jsonl` under the spill folder when there is one)."""

    signal_id: uuid.UUID
    error: str


@dataclass(frozen=True)
class WriterStatus:
    """What has not reached the table yet, and what never will."""

    waiting: int  # rows in memory, not committed yet
    spilled: int  # rows in spill files, not replayed yet
    rejected: int  # rows the database refused one by one since the writer started
    committed: int  # rows committed since the writer started
    retries: int  # rounds retried because the database was unavailable
    retrying: bool  # the last attempt found the database unavailable
    last_error: str | None  # why the last attempt failed (None after a success)

    @property
    def backlog(self) -> bool:
        """Rows are kept back because the database could not take them."""
        return self.retrying or self.spilled > 0


class SignalWriter:
    """Commits signal rows in rounds on a background thread; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        spill_dir: Path | None = None,
        max_buffer: int = 50_000,
        max_batch: int = 500,
        linger: float = 0.02,
        first_backoff: float = 0.1,
        max_backoff: float = 5.0,
        on_rejected: Callable[[Sequence[RejectedRow]], None] | None = None,
    ) -> None:
        self._engine, self._spill_dir = engine, spill_dir
        self._max_buffer, self._max_batch, self._linger = max_buffer, max_batch, linger
        self._first_backoff, self._max_backoff = first_backoff, max_backoff
        self._on_rejected = on_rejected
        self._queue: list[Row] = []
        self._cond = threading.Condition()
        self._busy = self._closing = self._closed = False
        self._committed = self._rejected = self._retries = self._spilled = 0
        self._retrying = False
        self._last_error: str | None = None
        self._replay_at = 0.0  # monotonic time of the next replay attempt
        self._spill_lock = threading.Lock()
        self._spill_file: IO[bytes] | None = None
        if spill_dir is not None:
            spill_dir.mkdir(parents=True, exist_ok=True)
            self._spilled = sum(_count_lines(p) for p in spill_dir.glob(SPILL_GLOB))
        self._thread = threading.Thread(target=self._run, name="signal-writer", daemon=True)
        self._thread.start()

    # --- callers ---------------------------------------------------------------------------

    def enqueue(self, rows: Sequence[Row]) -> None:
        """Take rows to commit moments later. Beyond `max_buffer` waiting rows they go to the
        spill file instead; StoreUnavailableError if they can be kept nowhere (no spill
        folder, or it cannot be written): the caller must not answer."""
        with self._cond:
            closed = self._closed
            if not closed and len(self._queue) + len(rows) <= self._max_buffer:
                self._queue.extend(rows)
                self._cond.notify_all()
                return
        if closed and self._spill_dir is None:
            self.write_now(rows)  # the process is stopping: nobody else will commit them
            return
        self._spill(rows)

    def write_now(self, rows: Sequence[Row]) -> None:
        """Commit rows before returning (one transaction); StoreUnavailableError when the
        database is away."""
        try:
            self._commit(resolved(rows))
        except DATABASE_UNAVAILABLE as exc:
            raise StoreUnavailableError(f"database unavailable: {error_line(exc)}") from exc

    def status(self) -> WriterStatus:
        with self._cond:
            return WriterStatus(
                waiting=len(self._queue),
                spilled=max(self._spilled, 0),
                rejected=self._rejected,
                committed=self._committed,
                retries=self._retries,
                retrying=self._retrying,
                last_error=self._last_error,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing waits in memory or in spill files (False: `timeout` passed)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._closed or (not self._queue and not self._busy and self._spilled <= 0),
                timeout,
            )

    def close(self, timeout: float = 10.0) -> None:
        """Commit what waits (while the database answers), then stop; rows that could not be
        committed go to the spill file, for the next start to replay."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            rest, self._queue = self._queue, []
            self._closed = True
            self._cond.notify_all()
        if rest:
            try:
                self._spill(rest)
            except StoreUnavailableError as exc:
                log.error("%d answered signal(s) lost at shutdown: %s", len(rest), exc)
        with self._spill_lock:
            self._close_spill_file()

    # --- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                if failures:  # backing off: wait, unless told to stop
                    delay = min(self._first_backoff * 2 ** (failures - 1), self._max_backoff)
                    self._cond.wait_for(lambda: self._closing, delay)
                while not self._queue and not self._replay_due() and not self._closing:
                    # Spilled rows another process holds: look again in a while.
                    self._cond.wait(1.0 if self._spilled > 0 else None)
                if self._closing and (not self._queue or failures):
                    return  # nothing left, or the database is away: `close` spills the rest
                deadline = time.monotonic() + self._linger
                while not self._closing and len(self._queue) < self._max_batch:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._queue:
                        break
                    self._cond.wait(left)
                batch = self._queue[: self._max_batch]
                self._busy = True
            handled = 0
            unavailable: str | None = "the writer stopped unexpectedly"  # until set below
            try:
                handled, unavailable = self._round(batch)
                if unavailable is None and self._replay_due() and not self._closing:
                    unavailable = self._replay()
            except Exception as exc:  # a spill folder gone, say: keep the rows, try again later
                log.exception("the signal writer's round failed; rows kept, retrying")
                unavailable = error_line(exc)
            finally:
                with self._cond:
                    del self._queue[:handled]
                    self._busy = False
                    if unavailable is None:
                        failures, self._retrying, self._last_error = 0, False, None
                    else:
                        failures += 1
                        self._retries += 1
                        self._retrying, self._last_error = True, unavailable
                    self._cond.notify_all()

    def _round(self, batch: Sequence[Row]) -> tuple[int, str | None]:
        """Commit a round; (rows handled from the front, why the database was unavailable)."""
        if not batch:
            return 0, None
        batch = resolved(batch)
        try:
            self._commit(batch)
        except DATABASE_UNAVAILABLE as exc:
            return 0, error_line(exc)
        except Exception as exc:  # noqa: BLE001  (one row's fault: find it, keep the others)
            log.warning(
                "a round of %d signal(s) was refused (%s); retrying row by row",
                len(batch),
                error_line(exc),
            )
            return self._one_by_one(batch)
        return len(batch), None

    def _one_by_one(self, rows: Sequence[Row]) -> tuple[int, str | None]:
        rejected: list[RejectedRow] = []
        handled, unavailable = 0, None
        for row in rows:
            try:
                self._commit_alone(row)
            except DATABASE_UNAVAILABLE as exc:
                unavailable = error_line(exc)
                break
            except Exception as exc:  # noqa: BLE001  (this row cannot be stored: set aside)
                rejected.append(RejectedRow(row["id"], error_line(exc)))
                self._set_aside(row, rejected[-1])
            handled += 1
        if rejected:
            # Alerted first, then counted: once /metrics shows a rejected row, its alert is
            # stored (or its failure logged).
            if self._on_rejected is not None:
                try:
                    self._on_rejected(rejected)
                except Exception:  # an alert that fails must not stop the writer
                    log.exception("reporting %d rejected signal(s) failed", len(rejected))
            self._count(rejected=len(rejected))
        return handled, unavailable

    def _commit_alone(self, row: Row) -> None:
        """Commit one row; if its shadow answer is what the database refuses, the served row
        (what a caller was answered) is committed without it, and the shadow logged."""
        try:
            self._commit([row])
        except DATABASE_UNAVAILABLE:
            raise
        except Exception as exc:
            if row.get(SHADOW) is None:
                raise
            self._commit([{k: v for k, v in row.items() if k != SHADOW}])
            log.warning("signal %s stored without its shadow answer (%s)", row["id"], exc)

    def _commit(self, rows: Sequence[Row]) -> None:
        """One transaction for the rows (and their ml:new_prediction events).

        Rows already stored are skipped: a commit whose answer was lost with the connection
        may have happened, and its retry must not store (or announce) anything twice.
        On PostgreSQL the commit does not wait for its WAL flush (`synchronous_commit off`,
        this transaction only): a server crash could lose the last fraction of a second of
        signals, never corrupt or half-write them, and a request is not held for a disk sync.
        """
        new = store_absent_signal_rows(self._engine, rows, rows[0]["created_at"], synchronous=False)
        self._count(committed=new)

    def _count(self, committed: int = 0, rejected: int = 0) -> None:
        with self._cond:
            self._committed += committed
            self._rejected += rejected

    def _set_aside(self, row: Row, why: RejectedRow) -> None:
        line = orjson.dumps({"error": why.error, "row": row}).decode()
        log.error("signal %s not stored, the database refused it: %s", why.signal_id, line)
        if self._spill_dir is None:
            return
        with contextlib.suppress(OSError), (self._spill_dir / REJECTED_FILE).open("a") as out:
            out.write(line + "\n")

    # --- spilling and replaying ------------------------------------------------------------

    def _replay_due(self) -> bool:
        return (
            self._spill_dir is not None
            and self._spilled > 0
            and time.monotonic() >= self._replay_at
        )

    def _spill(self, rows: Sequence[Row]) -> None:
        if self._spill_dir is None:
            raise StoreUnavailableError(
                f"{len(self._queue)} signal(s) already wait for the database; no spill folder"
            )
        data = b"".join(
            orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for row in resolved(rows)
        )
        with self._spill_lock:
            try:
                if self._spill_file is None:
                    self._spill_file = _new_spill_file(self._spill_dir)
                self._spill_file.write(data)
                self._spill_file.flush()  # in the OS: survives this process being killed
            except OSError as exc:
                raise StoreUnavailableError(f"signals cannot be spilled to disk: {exc}") from exc
            with self._cond:
                self._spilled += len(rows)
                self._cond.notify_all()

    def _close_spill_file(self) -> None:
        if self._spill_file is not None:
            self._spill_file.close()  # releases the lock
            self._spill_file = None

    def _replay(self) -> str | None:
        """Store what the spill files hold; None, or why the database was unavailable."""
        assert self._spill_dir is not None
        with self._spill_lock:
            self._close_spill_file()  # new spills start a new file
        try:
            for path in sorted(self._spill_dir.glob(SPILL_GLOB)):
                with _locked(path) as rows:
                    if rows is None:
                        continue  # another process is writing or replaying it
                    for start in range(0, len(rows), REPLAY_CHUNK):
                        _, unavailable = self._round(rows[start : start + REPLAY_CHUNK])
                        if unavailable is not None:
                            # The file stays whole: what was stored is skipped next time.
                            return unavailable
                    path.unlink()
                    log.info("replayed %d spilled signal(s) from %s", len(rows), path.name)
            return None
        finally:
            with self._spill_lock:
                left = sum(_count_lines(p) for p in self._spill_dir.glob(SPILL_GLOB))
                with self._cond:
                    self._spilled = left
                    self._replay_at = time.monotonic() + 1.0


def resolved(rows: Sequence[Row]) -> list[Row]:
    """The rows with every shadow answer still on its way waited for (the rows that had one
    are copied; the others are passed as they are). A shadow whose call raised is dropped
    with a warning: the served row is what a caller was answered, and it is kept."""
    return [_resolved(row) if callable(row.get(SHADOW)) else row for row in rows]


def _resolved(row: Row) -> Row:
    try:
        return {**row, SHADOW: row[SHADOW]()}
    except Exception as exc:  # noqa: BLE001  (the challenger's fault, not the row's)
        log.warning("signal %s stored without its shadow answer (%s)", row["id"], exc)
        return {k: v for k, v in row.items() if k != SHADOW}


def _new_spill_file(spill_dir: Path) -> IO[bytes]:
    """A new spill file, locked before replayers can see it.

    The lock is held while this process appends: a replayer (here or in another worker
    process) leaves a file alone until it is complete. The file is made under a hidden name
    and renamed once locked; made under its final name, a replayer could take it in the
    moment between its creation and the lock, find it empty and remove it, and the rows
    then written to it would be lost.
    """
    name = f"spill-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.jsonl"
    hidden = spill_dir / f".{name}.new"
    handle = hidden.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        hidden.rename(spill_dir / name)
    except OSError:
        handle.close()
        raise
    log.warning("the database is behind: signals spill to %s", name)
    return handle


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[list[Row] | None]:
    """The rows of a spill file, read under its lock (None: another writer holds it)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        yield None  # replayed and removed by another process meanwhile
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        if not os.path.exists(path):
            yield None
            return
        yield [_row(line) for line in handle.read().splitlines() if _complete(line)]


def _complete(line: bytes) -> bool:
    # The last line of a file whose writer was killed mid-write may be cut short.
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def _row(line: bytes) -> Row:
    row: Row = orjson.loads(line)
    _typed(row)
    if row.get(SHADOW) is not None:
        _typed(row[SHADOW])
    return row


def _typed(row: Row) -> None:
    """The ids and moments of a row read back from JSON, as the tables take them."""
    row["id"] = uuid.UUID(row["id"])
    row["created_at"] = datetime.fromisoformat(row["created_at"])
    if row.get("ab_test_id") is not None:
        row["ab_test_id"] = uuid.UUID(row["ab_test_id"])


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except FileNotFoundError:  # replayed and removed by another process meanwhile
        return 0


def writer_families(status: WriterStatus) -> list[Family]:
    """The writer's `/metrics` families."""
    return [
        Family(
            "aifx_signal_writer_waiting",
            "gauge",
            "Answered signals waiting in memory to be committed.",
            [({}, status.waiting)],
        ),
        Family(
            "aifx_signal_writer_spilled",
            "gauge",
            "Answered signals kept in spill files until the database takes them.",
            [({}, status.spilled)],
        ),
        Family(
            "aifx_signal_rows_rejected_total",
            "counter",
            "Answered signals the database refused one by one (logged, alerted, not stored).",
            [({}, status.rejected)],
        ),
        Family(
            "aifx_signal_writer_retries_total",
            "counter",
            "Signal-writer rounds retried because the database was unavailable.",
            [({}, status.retries)],
        ),
    ]
