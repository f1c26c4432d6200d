"""The summary grid: host runtimes as rows, guest runtimes as columns, and
passed / failed / skipped counts in each cell. Built as plain data from test
reports (on the controller too, under pytest-xdist), then rendered."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ._variants import VARIANTS

__all__ = ("ALONE", "Grid")

#: The column of tests that run on one runtime, with no guest.
ALONE = "(alone)"


_RANK = {"passed": 0, "skipped": 1, "failed": 2}


@dataclass
class Grid:
    #: nodeid -> (host, guest or ALONE, outcome); the worst phase wins.
    results: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def record(self, nodeid: str, host: str, guest: str, outcome: str) -> None:
        old = self.results.get(nodeid)
        if old is None or _RANK[outcome] > _RANK[old[2]]:
            self.results[nodeid] = (host, guest, outcome)

    def counts(self) -> dict[tuple[str, str], Counter[str]]:
        cells: dict[tuple[str, str], Counter[str]] = {}
        for host, guest, outcome in self.results.values():
            cells.setdefault((host, guest), Counter())[outcome] += 1
        return cells

    def render(self) -> list[str]:
        cells = self.counts()
        if not cells:
            return []
        order = [v.name for v in VARIANTS]
        hosts = [h for h in order if any(k[0] == h for k in cells)]
        guests = [g for g in [ALONE, *order] if any(k[1] == g for k in cells)]

        def cell(host: str, guest: str) -> str:
            c = cells.get((host, guest))
            if c is None:
                return "-"
            return f"{c['passed']}/{c['failed']}/{c['skipped']}"

        rows = [["host \\ guest", *guests]]
        rows += [[host, *(cell(host, guest) for guest in guests)] for host in hosts]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines.append("cells: passed/failed/skipped")
        return lines
