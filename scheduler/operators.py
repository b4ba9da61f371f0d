"""Flavor capability requirements (``capabilities:<key>`` extra specs) with Nova's operators.

A requirement is a string; its first word may be an operator, the rest is its operand.
Operators are case-sensitive and must stand alone as the first word (``">= 2"``, not ``">=2"``):

============ ======================== ==================================================
operator     example                  the node value matches when
============ ======================== ==================================================
(none)       ``uefi``                 its text equals ``uefi``
``=``        ``= 4``                  it is a number >= 4 ("at least", Nova's meaning)
``==``       ``== 4``                 it is a number equal to 4
``!=``       ``!= 4``                 it is a number other than 4
``>=``       ``>= 2``                 it is a number >= 2
``<=``       ``<= 2``                 it is a number <= 2
``s==``      ``s== bios``             its text equals ``bios``
``s!=``      ``s!= bios``             its text differs from ``bios``
``s<``       ``s< 2.10``              its text sorts before ``2.10`` (code-point order)
``s<=``      ``s<= 2.10``             ... before or equal
``s>``       ``s> 2.10``              ... after
``s>=``      ``s>= 2.10``             ... after or equal
``<in>``     ``<in> EPYC``            ``EPYC`` occurs in its text
``<all-in>`` ``<all-in> aes avx2``    it is a list holding both ``aes`` and ``avx2``
``<or>``     ``<or> 1 <or> 10``       its text equals one of the alternatives
============ ======================== ==================================================

Matching never raises: a missing value (None), a value of an unsupported type, a non-number
for a numeric operator, NaN or infinity, or a malformed requirement simply does not match.
``validate`` names what is wrong with a malformed requirement, for the API's 422.

Where Nova's behaviour (``extra_specs_ops.match(str(cap), req)``) is accidental, we choose:

- Whitespace runs are collapsed and the ends stripped, on both sides, before any text
  comparison: capability values are machine-written, so spacing carries no meaning.
- The operand of ``s==``, ``<in>`` etc. is the whole rest of the requirement (Nova silently
  used the first word only), so ``<in> Xeon Gold`` means the phrase.
- Numbers are compared exactly as decimals, not floats: ``10**400`` or ``"1e400"`` compare
  correctly instead of overflowing, and ``"4.0000000000000000001"`` is not ``== 4``. Only
  plain decimal syntax counts as a number (no ``1_000``, hex, non-ASCII digits, inf, nan);
  bools are not numbers.
- A bool value reads as ``true``/``false`` (the Ironic/JSON spelling); plain and ``<or>``
  equality against a bool ignore case, so Nova-style ``True`` matches too.
- ``<all-in>`` tests membership, not Nova's substring-of-``str(list)``: ``<all-in> ae`` does
  not match ``["aes"]``. The value may be a list/tuple/set, a string holding a JSON or
  Python list literal, or a string of items separated by commas and/or whitespace
  (a bracketed string that is no list literal matches nothing: we don't guess).
  Requirement items are separated likewise.
- ``<in>`` against a list value looks for the substring in each element.
- ``<or>`` alternatives are whatever lies between ``<or>`` markers, so they may span words
  (Nova alternated words and markers blindly and crashed on a bare ``<or>``).
- An empty requirement, a first word that looks like an operator but is not one (``> 2``,
  ``<foo> x``, ``>=2``), and ``<or>`` anywhere but first are malformed, not literals: they
  are typos that would otherwise never match.
- A non-numeric value fails ``!=`` too, and a missing value fails ``s!=``: "no match" is the
  one answer for any value we cannot read.
- Text operators read numbers as Python prints them (like Nova's ``str()``): ``4`` is
  ``"4"`` but ``4.0`` is ``"4.0"``; use ``==`` to compare numbers.
- No Unicode normalisation or case folding: values are compared code point by code point.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache

__all__ = ["OPERATORS", "Requirement", "matches", "parse", "validate"]

Test = Callable[[object], bool]

NUMERIC: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "=": operator.ge,  # Nova's "=" means "at least"
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
}
STRING: dict[str, Callable[[str, str], bool]] = {
    "s==": operator.eq,
    "s!=": operator.ne,
    "s<": operator.lt,
    "s<=": operator.le,
    "s>": operator.gt,
    "s>=": operator.ge,
}
IN, ALL_IN, OR = "<in>", "<all-in>", "<or>"
OPERATORS = frozenset({*NUMERIC, *STRING, IN, ALL_IN, OR})

# Something that reads as an operator (any case, so "S==" and "<IN>" are caught as typos).
_OPERATOR_LIKE = re.compile(r"<[A-Za-z-]*>|[sS]?[=!<>]+")
# Plain decimal syntax only: what a flavor author and any other reader agree is a number.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_ITEM_SEPARATORS = re.compile(r"[,\s]+")
_SEQUENCES = (list, tuple, set, frozenset)


@dataclass(frozen=True, slots=True)
class Requirement:
    """A parsed requirement: parse once per flavor, then ``matches`` once per node."""

    text: str
    op: str  # "" for a plain value
    error: str | None = None  # why it is malformed; a malformed requirement matches nothing
    test: Test = field(default=lambda _value: False, repr=False, compare=False)

    def matches(self, value: object) -> bool:
        return self.test(value)


def matches(req: str, value: object) -> bool:
    """Whether a node's capability ``value`` satisfies ``req``; never raises."""
    return parse(req).matches(value)


def validate(req: str) -> str | None:
    """None for a well-formed requirement, else a human-readable reason."""
    return parse(req).error


def parse(req: str) -> Requirement:
    """The parsed requirement (cached); malformed input gives one with ``error`` set."""
    if not isinstance(req, str):  # callers are typed, but extra_specs come from JSON
        return Requirement("", "", f"a requirement must be a string, not {type(req).__name__}")
    return _parse(req)


@lru_cache(maxsize=1024)
def _parse(req: str) -> Requirement:
    words = req.split()
    if not words:
        return _malformed(req, "", "the requirement is empty")
    head, rest = words[0], words[1:]
    if head != OR and OR in rest:
        return _malformed(req, head, f"'{OR}' must come first")
    if head in NUMERIC:
        return _parse_numeric(req, head, rest)
    if head in STRING:
        return _with_operand(req, head, rest, lambda want: _string_test(STRING[head], want))
    if head == IN:
        return _with_operand(req, head, rest, _in_test)
    if head == ALL_IN:
        return _parse_all_in(req, rest)
    if head == OR:
        return _parse_or(req, rest)
    return _parse_plain(req, words)


def _malformed(req: str, op: str, why: str) -> Requirement:
    return Requirement(req, op, f"'{req.strip()}': {why}")


def _parse_numeric(req: str, op: str, rest: list[str]) -> Requirement:
    want = _decimal(rest[0]) if len(rest) == 1 else None
    if want is None:
        return _malformed(req, op, f"'{op}' needs a number")
    compare = NUMERIC[op]

    def test(value: object) -> bool:
        have = _number(value)
        return have is not None and compare(have, want)

    return Requirement(req, op, test=test)


def _with_operand(req: str, op: str, rest: list[str], build: Callable[[str], Test]) -> Requirement:
    if not rest:
        return _malformed(req, op, f"'{op}' needs a value")
    return Requirement(req, op, test=build(" ".join(rest)))


def _string_test(compare: Callable[[str, str], bool], want: str) -> Test:
    def test(value: object) -> bool:
        have = _text(value)
        return have is not None and compare(have, want)

    return test


def _in_test(want: str) -> Test:
    def test(value: object) -> bool:
        if isinstance(value, _SEQUENCES):
            return any(want in text for text in _texts(value))
        have = _text(value)
        return have is not None and want in have

    return test


def _parse_all_in(req: str, rest: list[str]) -> Requirement:
    wanted = frozenset(_split_items(" ".join(rest)))
    if not wanted:
        return _malformed(req, ALL_IN, f"'{ALL_IN}' needs at least one item")

    def test(value: object) -> bool:
        have = _members(value)
        return have is not None and wanted <= have

    return Requirement(req, ALL_IN, test=test)


def _parse_or(req: str, rest: list[str]) -> Requirement:
    alternatives: list[str] = []
    current: list[str] = []
    for word in [*rest, OR]:  # a trailing marker closes the last alternative
        if word != OR:
            current.append(word)
        elif current:
            alternatives.append(" ".join(current))
            current = []
        else:
            return _malformed(req, OR, f"every '{OR}' needs a value after it")
    return Requirement(req, OR, test=_equality_test(frozenset(alternatives)))


def _parse_plain(req: str, words: list[str]) -> Requirement:
    head = words[0]
    looks_like = _OPERATOR_LIKE.match(head)
    if looks_like:
        prefix = looks_like.group()
        if prefix in OPERATORS:  # e.g. ">=2": Nova would take it as a literal that never matches
            return _malformed(req, "", f"put a space after the operator '{prefix}'")
        return _malformed(req, "", f"unknown operator '{prefix}'")
    return Requirement(req, "", test=_equality_test(frozenset({" ".join(words)})))


def _equality_test(accepted: frozenset[str]) -> Test:
    # Precomputed so a bool value costs a set lookup, not a lower() per alternative.
    accepted_bools = frozenset(a.lower() for a in accepted) & {"true", "false"}

    def test(value: object) -> bool:
        if isinstance(value, bool):
            return ("true" if value else "false") in accepted_bools
        have = _text(value)
        return have is not None and have in accepted

    return test


# ---- reading node values -------------------------------------------------------------------


def _text(value: object) -> str | None:
    """A scalar's text with whitespace collapsed; None when it has no faithful text form."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            return None
    if isinstance(value, float):
        return str(value) if math.isfinite(value) else None
    if isinstance(value, Decimal):  # not math.isfinite: a huge Decimal is finite but no float
        return str(value) if value.is_finite() else None
    return None


def _texts(values: Collection[object]) -> list[str]:
    return [text for text in map(_text, values) if text is not None]


def _number(value: object) -> Decimal | None:
    """A finite number, exactly; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr is the shortest text that round-trips: 0.1 stays 0.1, not its binary expansion.
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str):
        return _decimal(value)
    return None


def _decimal(text: str) -> Decimal | None:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent beyond what decimal can represent
        return None


def _split_items(text: str) -> list[str]:
    return [item for item in _ITEM_SEPARATORS.split(text) if item]


def _members(value: object) -> frozenset[str] | None:
    if isinstance(value, _SEQUENCES):
        return frozenset(_texts(value))
    if isinstance(value, str):
        return _members_of_text(value)
    return None


@lru_cache(maxsize=4096)
def _members_of_text(text: str) -> frozenset[str] | None:
    # Many nodes share a value, and literal parsing is the slow path: cache it.
    text = text.strip()
    if not text.startswith(("[", "(", "{")):
        return frozenset(_split_items(text))
    for load in (json.loads, ast.literal_eval):
        try:
            loaded = load(text)
        except Exception:  # general-purpose parsers on node data: any failure means "not a list"
            continue
        if isinstance(loaded, _SEQUENCES):
            return frozenset(_texts(loaded))
    return None  # bracketed but not a list: don't guess
