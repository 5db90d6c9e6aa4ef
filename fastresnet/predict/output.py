"""The rows `predict` writes, one per readable image, as CSV or Parquet by the file's suffix.

Written to a temporary file beside the target and renamed onto it once complete: an
interrupted run leaves no file under the target's name that looks finished."""

from __future__ import annotations

import csv
import os
from pathlib import Path

SUFFIXES = (".csv", ".parquet")


def check_target(path: Path) -> None:
    """ValueError, before any work, where ``path`` cannot be written as asked."""
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"--out {str(path)!r}: expected a .csv or .parquet file name")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError("writing .parquet needs pyarrow (pip install 'fastresnet[predict]'); or write .csv") from None
    if not path.parent.is_dir():
        raise ValueError(f"--out {str(path)!r}: folder {str(path.parent)!r} does not exist")


class RowWriter:
    """Collects rows (dicts with the same keys) and writes them to ``path`` on ``close()``;
    CSV rows go to the temporary file as they come."""

    def __init__(self, path: Path):
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        self.csv = path.suffix.lower() == ".csv"
        self.rows: list[dict] = []
        self._file = self._writer = None

    def write(self, rows: list[dict]) -> None:
        if not self.csv:
            self.rows += rows
            return
        if self._writer is None and rows:
            self._file = open(self.partial, "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=list(rows[0]))
            self._writer.writeheader()
        for row in rows:
            self._writer.writerow(row)

    def close(self, fieldnames: list[str]) -> None:
        """Finish the file under its own name (a header only where no row came)."""
        if self.csv:
            if self._file is None:
                with open(self.partial, "w", newline="") as f:
                    csv.DictWriter(f, fieldnames=fieldnames).writeheader()
            else:
                self._file.close()
        else:
            import pyarrow
            import pyarrow.parquet

            columns = {name: [row[name] for row in self.rows] for name in (list(self.rows[0]) if self.rows else fieldnames)}
            pyarrow.parquet.write_table(pyarrow.table(columns), self.partial)
        os.replace(self.partial, self.path)

    def abandon(self) -> None:
        """Remove the temporary file after a failure; the target is left as it was."""
        if self._file is not None:
            self._file.close()
        self.partial.unlink(missing_ok=True)
