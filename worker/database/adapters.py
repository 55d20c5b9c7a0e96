"""Where psycopg2's own adaptation of a value loses data, ours replaces it (for every session of
the process, from the moment this module is imported: `sql` and `literals` import it).

- `Decimal`: psycopg2 writes every non-finite Decimal as `'NaN'::numeric`, so
  `Decimal('Infinity')` would be stored as NaN. PostgreSQL 14+ stores numeric ±Infinity; we
  write `'Infinity'::numeric` and `'-Infinity'::numeric`. A server older than 14 refuses that
  literal itself (22P02 invalid input syntax for type numeric), which is a refused row, set
  apart like any other, never a NaN stored in its place. A column whose precision cannot hold
  an infinity (`numeric(10,2)`) refuses it on any version (22003), the same way.

`literals` writes the same bytes for the same values (`decimal_literal`), so a batch reads
alike whichever path renders it.
"""

from __future__ import annotations

from decimal import Decimal

from psycopg2.extensions import register_adapter


def decimal_literal(value: Decimal) -> str:
    """`value` as a literal: psycopg2's for a finite Decimal (a space before a minus, so that
    `-` after an operator never makes a comment); its own name for NaN and each infinity."""
    if value.is_finite():
        text = str(value)
        return " " + text if text[0] == "-" else text
    if value.is_nan():  # a signaling NaN too: numeric has one NaN
        return "'NaN'::numeric"
    return "'-Infinity'::numeric" if value.is_signed() else "'Infinity'::numeric"


class DecimalLiteral:
    """psycopg2's adapter protocol (ISQLQuote) for a Decimal."""

    __slots__ = ("_value",)

    def __init__(self, value: Decimal) -> None:
        self._value = value

    def getquoted(self) -> bytes:
        return decimal_literal(self._value).encode("ascii")


register_adapter(Decimal, DecimalLiteral)
