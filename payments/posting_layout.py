"""The layout of a posting file, as the utility's billing system reads it.

A layout is a TOML file (``securepay payments export --batch --layout FILE``); without
one, ``DEFAULT`` is a plain CSV with a header row, one line per payment, refund or
dispute, and a trailer line with the batch number, the line count and the net sum::

    format = "csv"              # or "fixed" (fixed-width columns)
    delimiter = ","             # csv only
    header = true               # csv only: a row of column names first
    line_end = "crlf"           # or "lf" (default)
    date_format = "%m/%d/%Y"    # strftime; the day in the utility's zone
    amount_format = "decimal"   # 123.45 and -12.50; or "cents": 12345 and -1250
    [record_types]              # the record_type field per kind of line
    payment = "P"
    refund = "R"
    dispute = "D"
    trailer = "T"
    [[columns]]                 # in order; width, align and pad: fixed only
    field = "account_number"
    width = 12
    align = "right"             # or "left" (default)
    pad = "0"                   # one character, default " "
    [[trailer]]                 # the trailer's columns, the same way
    field = "count"

Line fields: ``LINE_FIELDS``; trailer fields: ``TRAILER_FIELDS``. A value wider than its
column is an error, never cut: a truncated account number posts to someone else.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from db.posting_batches import Batch, PostingLine

__all__ = ["DEFAULT", "LINE_FIELDS", "TRAILER_FIELDS", "Column", "Layout", "LayoutError"]


class LayoutError(ValueError):
    """A layout file that cannot be used, or a value that does not fit it."""


def _amount(cents: int, fmt: str) -> str:
    if fmt == "cents":
        return str(cents)
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}{dollars}.{rest:02d}"


@dataclass(frozen=True)
class Column:
    field: str
    width: int | None = None
    align: Literal["left", "right"] = "left"
    pad: str = " "
    header: str | None = None  # the header row's name (csv); default the field's name

    def fit(self, value: str, fixed: bool) -> str:
        if not fixed or self.width is None:
            return value
        if len(value) > self.width:  # the value is not quoted: an account number, an amount
            raise LayoutError(
                f"a {self.field} of {len(value)} characters is wider than its {self.width} columns"
            )
        if self.align == "left":
            return value.ljust(self.width, self.pad)
        sign = value[:1] if value[:1] == "-" and self.pad == "0" else ""
        return sign + value[len(sign):].rjust(self.width - len(sign), self.pad)


LineValue = Callable[[PostingLine, "Layout", int], str]
LINE_FIELDS: Mapping[str, LineValue] = {
    "record_type": lambda line, layout, _n: layout.record_types[line.kind],
    "batch": lambda _line, _layout, number: str(number),
    "kind": lambda line, _layout, _n: line.kind,
    "account_number": lambda line, _layout, _n: line.account_number,
    "amount": lambda line, layout, _n: _amount(line.amount_cents, layout.amount_format),
    "date": lambda line, layout, _n: line.occurred_at.astimezone(layout.zone).strftime(layout.date_format),
    "occurred_at": lambda line, _layout, _n: line.occurred_at.astimezone(UTC).isoformat(timespec="seconds"),
    "confirmation": lambda line, _layout, _n: line.confirmation,
    "processor_id": lambda line, _layout, _n: line.processor_id,
    "payment_processor_id": lambda line, _layout, _n: line.payment_processor_id,
    "method_brand": lambda line, _layout, _n: line.method_brand,
    "method_last4": lambda line, _layout, _n: line.method_last4,
    "channel": lambda line, _layout, _n: line.channel,
}
TrailerValue = Callable[[Batch, "Layout"], str]
TRAILER_FIELDS: Mapping[str, TrailerValue] = {
    "record_type": lambda _batch, layout: layout.record_types["trailer"],
    "batch": lambda batch, _layout: str(batch.number),
    "count": lambda batch, _layout: str(batch.count),
    "total": lambda batch, layout: _amount(batch.total_cents, layout.amount_format),
    "date": lambda batch, layout: batch.created_at.astimezone(layout.zone).strftime(layout.date_format),
}
_DEFAULT_RECORD_TYPES = {"payment": "P", "refund": "R", "dispute": "D", "trailer": "T"}


@dataclass(frozen=True)
class Layout:
    columns: tuple[Column, ...]
    trailer: tuple[Column, ...]
    format: Literal["csv", "fixed"] = "csv"
    delimiter: str = ","
    header: bool = True
    line_end: str = "\n"
    date_format: str = "%Y-%m-%d"
    amount_format: Literal["decimal", "cents"] = "decimal"
    record_types: Mapping[str, str] = field(default_factory=lambda: dict(_DEFAULT_RECORD_TYPES))
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def in_zone(self, zone: ZoneInfo) -> Layout:
        """This layout with dates in ``zone`` (the utility's)."""
        return replace(self, zone=zone)

    def render(self, batch: Batch) -> str:
        """The whole file; ``LayoutError`` when a value does not fit."""
        fixed = self.format == "fixed"
        rows: list[list[str]] = []
        if self.header and not fixed:
            rows.append([column.header or column.field for column in self.columns])
        for line in batch.lines:
            rows.append([
                column.fit(LINE_FIELDS[column.field](line, self, batch.number), fixed)
                for column in self.columns
            ])
        rows.append([column.fit(TRAILER_FIELDS[column.field](batch, self), fixed) for column in self.trailer])
        if fixed:
            return "".join("".join(row) + self.line_end for row in rows)
        out = io.StringIO()
        csv.writer(out, delimiter=self.delimiter, lineterminator=self.line_end).writerows(rows)
        return out.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> Layout:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise LayoutError(f"cannot read {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise LayoutError(f"{path}: not a TOML file ({exc})") from None
        try:
            return cls.from_mapping(data)
        except LayoutError as exc:
            raise LayoutError(f"{path}: {exc}") from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Layout:
        known = {"format", "delimiter", "header", "line_end", "date_format", "amount_format",
                 "record_types", "columns", "trailer"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LayoutError(f"unknown key(s): {', '.join(unknown)}")
        fmt = data.get("format", "csv")
        if fmt not in ("csv", "fixed"):
            raise LayoutError(f"format must be csv or fixed, got {fmt!r}")
        amount_format = data.get("amount_format", "decimal")
        if amount_format not in ("decimal", "cents"):
            raise LayoutError(f"amount_format must be decimal or cents, got {amount_format!r}")
        line_end = {"lf": "\n", "crlf": "\r\n"}.get(data.get("line_end", "lf"))
        if line_end is None:
            raise LayoutError("line_end must be lf or crlf")
        date_format = data.get("date_format", "%Y-%m-%d")
        if not isinstance(date_format, str) or "%" not in date_format:
            raise LayoutError("date_format must be a strftime pattern such as %Y-%m-%d")
        delimiter = data.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise LayoutError("delimiter must be one character")
        record_types = {**_DEFAULT_RECORD_TYPES, **_strings(data.get("record_types", {}), "record_types")}
        columns = _columns(data.get("columns"), "columns", LINE_FIELDS, fmt == "fixed")
        trailer = _columns(data.get("trailer"), "trailer", TRAILER_FIELDS, fmt == "fixed")
        return cls(columns, trailer, fmt, delimiter, bool(data.get("header", True)), line_end,
                   date_format, amount_format, record_types)


def _strings(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise LayoutError(f"{where} must be a table of strings")
    unknown = sorted(set(value) - set(_DEFAULT_RECORD_TYPES))
    if unknown:
        raise LayoutError(f"{where}: unknown kind(s): {', '.join(unknown)}")
    return dict(value)


def _columns(value: object, where: str, fields: Mapping[str, object], fixed: bool) -> tuple[Column, ...]:
    if not isinstance(value, list) or not value:
        raise LayoutError(f"[[{where}]] must list at least one column")
    columns = []
    for number, entry in enumerate(value, start=1):
        if not isinstance(entry, dict) or entry.get("field") not in fields:
            raise LayoutError(
                f"{where} {number}: field must be one of {', '.join(fields)}, got {entry!r}"[:300]
            )
        width = entry.get("width")
        if fixed and (not isinstance(width, int) or width < 1):
            raise LayoutError(f"{where} {number} ({entry['field']}): a fixed layout needs a width")
        align = entry.get("align", "left")
        pad = entry.get("pad", " ")
        if align not in ("left", "right") or not isinstance(pad, str) or len(pad) != 1:
            raise LayoutError(
                f"{where} {number} ({entry['field']}): align is left or right, pad one character"
            )
        columns.append(Column(entry["field"], width, align, pad, entry.get("header")))
    return tuple(columns)


def _default() -> Layout:
    line = ("record_type", "batch", "date", "account_number", "amount", "confirmation", "processor_id",
            "kind", "channel", "method_brand", "method_last4")
    trailer = ("record_type", "batch", "count", "total")
    return Layout(tuple(Column(name) for name in line), tuple(Column(name) for name in trailer))


DEFAULT = _default()

