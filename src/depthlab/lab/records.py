"""A sweep's results as a table: one row per point, its grid values and metrics as columns.

:func:`depthlab.sweeps.load` reads a results file (see :mod:`depthlab.lab.sweeps`) and returns
a pandas ``DataFrame`` when pandas is installed, else :class:`Records`, a list of flat dicts
that a notebook shows as an HTML table.

Columns, in order: ``experiment``, the grid's keys (``point``), the metrics, then ``status``,
``seconds`` and ``error``. A metric whose name is also a grid key becomes ``metrics.NAME``.
When a point was recorded more than once (resumed or retried), its last record is kept.
"""
from __future__ import annotations

import json

from .. import _html

TRAILING = ("status", "seconds", "error")


def flatten(record: dict) -> dict:
    """One flat row of a record: experiment, point values, metrics, status, seconds, error."""
    point, metrics = dict(record.get("point") or {}), dict(record.get("metrics") or {})
    row = {"experiment": record.get("experiment")}
    row.update(point)
    for name, value in metrics.items():
        key = f"metrics.{name}" if name in row or name in TRAILING else name
        row[key] = value
    for name in TRAILING:
        row[name] = record.get(name)
    return row


def latest(records: list[dict]) -> list[dict]:
    """The last record of each (experiment, point, fixed), at the place where that point first appeared."""
    kept: dict[str, dict] = {}
    for record in records:
        identity = json.dumps([record.get("experiment"), record.get("point"), record.get("fixed")], sort_keys=True,
                              default=str)
        kept[identity] = record          # a dict keeps the key's first position
    return list(kept.values())


def columns(rows: list[dict]) -> list[str]:
    """Every key of every row, in the order of :func:`flatten` (trailing columns last)."""
    seen = dict.fromkeys(key for row in rows for key in row if key not in TRAILING)
    return [*seen, *(name for name in TRAILING if any(row.get(name) is not None for row in rows))]


class Records(list):
    """A sweep's flat rows (a list of dicts) that displays as a table; what ``load`` returns without pandas.

    ``records.columns`` lists the keys; ``records.column(name)`` gives one column as a list
    (None where a row lacks it).
    """

    @property
    def columns(self) -> list[str]:
        return columns(self)

    def column(self, name: str) -> list:
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; the columns are {', '.join(self.columns) or 'none (no records)'}.")
        return [row.get(name) for row in self]

    def __repr__(self) -> str:
        names = self.columns
        if not self:
            return "Records(0 rows)"
        cells = [[_html.number(row.get(name)) for name in names] for row in self]
        widths = [max(len(name), *(len(str(r[i])) for r in cells)) for i, name in enumerate(names)]
        lines = ["  ".join(name.rjust(w) for name, w in zip(names, widths))]
        lines += ["  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in cells]
        return f"Records({len(self)} rows)\n" + "\n".join(lines)

    def _repr_html_(self) -> str:  # Jupyter
        names = self.columns
        failed = sum(row.get("status") == "failed" for row in self)
        status = _html.badge(f"{failed} failed", "failed") if failed else _html.badge("all ok", "ok") if self else ""
        rows = [[_html.Markup(_html.badge(row[name], row[name])) if name == "status" and row.get(name) else
                 _cell(row.get(name)) for name in names] for row in self]
        return _html.container(_html.heading(f"sweep records: {len(self)} points", status),
                               _html.table(names, rows))


def _cell(value):
    """Numbers and text as they are; lists and dicts as compact JSON-like text."""
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


def frame(rows: list[dict], as_frame: bool | None):
    """A pandas DataFrame of ``rows`` (``as_frame`` True, or None and pandas installed), else Records."""
    if as_frame is not False:
        try:
            import pandas
        except ImportError:
            if as_frame:
                raise ImportError("as_frame=True needs pandas, which is not installed: pip install pandas "
                                  "(or pass as_frame=False for a list of dicts).") from None
        else:
            return pandas.DataFrame(rows, columns=columns(rows))
    return Records(rows)
