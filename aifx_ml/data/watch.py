"""A drop folder: candle files put there are imported, then moved out of the way.

Each `PAIR_TIMEFRAME.csv` file (e.g. `EURUSD_1h.csv`; the name says the series, as for
`aifx data import`) is imported in a transaction of its own, then moved to `processed/`; a file
that is not a candle CSV, or whose name does not say its series, is moved to `rejected/` with
`<name>.error.txt` beside it holding the reason, and nothing of it is written. A file is never
imported twice: it leaves the folder once handled, and were the process killed between the
commit and the move, the next pass would find every candle already stored (a duplicate
changes nothing). Files whose names start with `.` or end in `.part` or `.tmp` are being
written and are left alone: write to such a name, then rename.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from aifx_ml.data.importer import CandleFile, ImportReport, import_csv_files
from aifx_ml.data.reader import series_from_filename
from aifx_ml.errors import AifxError

PROCESSED, REJECTED = "processed", "rejected"
IN_PROGRESS = (".part", ".tmp")


@dataclass(frozen=True)
class Handled:
    """One dropped file and what became of it."""

    name: str
    moved_to: Path
    report: ImportReport | None = None  # None: rejected
    error: str | None = None


def waiting_files(folder: Path) -> list[Path]:
    """The files ready to import, oldest first."""
    ready = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(IN_PROGRESS)
    ]
    return sorted(ready, key=lambda p: (p.stat().st_mtime, p.name))


def import_dropped(engine: Engine, folder: Path, as_of: datetime) -> list[Handled]:
    """Import every file waiting in `folder`, each in its own transaction, and move it."""
    handled = []
    for path in waiting_files(folder):
        series = series_from_filename(path)
        try:
            if series is None:
                raise AifxError(
                    f"{path.name}: the name does not say the series (PAIR_TIMEFRAME.csv, "
                    "e.g. EURUSD_1h.csv)"
                )
            (report,) = import_csv_files(engine, [CandleFile(path, *series)], as_of)
        except AifxError as exc:
            moved = _move(path, folder / REJECTED)
            moved.with_name(moved.name + ".error.txt").write_text(f"{exc}\n")
            handled.append(Handled(path.name, moved, error=str(exc)))
            continue
        handled.append(Handled(path.name, _move(path, folder / PROCESSED), report=report))
    return handled


def _move(path: Path, into: Path) -> Path:
    """Move `path` into `into`, never over an earlier file of the same name."""
    into.mkdir(parents=True, exist_ok=True)
    target, n = into / path.name, 1
    while target.exists():
        target = into / f"{path.stem}.{n}{path.suffix}"
        n += 1
    return path.rename(target)
