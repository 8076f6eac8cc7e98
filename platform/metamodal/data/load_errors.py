"""Errors that point at the bad record, and the ledger of what a loader skipped.

Loaders never drop a record silently: a structural problem raises ``DataError`` naming the
file, row and field; a record that is skipped by policy (a duplicate, an image given only as a
URL) is counted in a ``LoadReport`` that ``metamodal data inspect`` prints.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """A bad input record: says which file, which row (1-based, header excluded) and which field."""

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.row = row
        self.field = field
        where = self.path
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


@dataclass
class LoadReport:
    """What a loader skipped or noticed, by reason, with the first example of each."""

    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, example: str, count: int = 1) -> None:
        if count <= 0:
            return
        self.skipped[reason] += count
        self.examples.setdefault(reason, example)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def merge(self, other: LoadReport) -> None:
        for reason, n in other.skipped.items():
            self.skip(reason, other.examples.get(reason, ""), n)
        self.notes.extend(other.notes)

    def to_dict(self) -> dict:
        return {
            "skipped": dict(self.skipped),
            "examples": dict(self.examples),
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        out = [
            f"skipped {n} record(s): {reason} (first: {self.examples.get(reason, '?')})"
            for reason, n in sorted(self.skipped.items())
        ]
        return out + [f"note: {n}" for n in self.notes]
