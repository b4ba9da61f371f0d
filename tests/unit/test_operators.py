"""Capability operators (scheduler.operators): pure functions, no fixtures."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from scheduler.operators import OPERATORS, Requirement, matches, parse, validate

HUGE = 10**400  # float(HUGE) raises OverflowError
HUGE_TEXT = "1" + "0" * 400
BEYOND_STR = 10**5000  # str() refuses it (int max str digits)


def short_id(value: object) -> str | None:
    """Test ids pytest can build: str() of BEYOND_STR raises, long strings are noise."""
    if isinstance(value, int) and abs(value) > 10**100:
        return f"{'-' if value < 0 else ''}huge-int"
    if isinstance(value, str) and len(value) > 30:
        return f"{value[:12]}...({len(value)})"
    return None  # pytest's default


# (requirement, node value, matches?)
OPERATOR_CASES: list[tuple[str, object, bool]] = [
    # no operator: text equality
    ("uefi", "uefi", True),
    ("uefi", "bios", False),
    ("uefi", "UEFI", False),
    ("4", 4, True),
    ("4", 4.0, False),  # textual: "4.0" is not "4"
    ("true", True, True),
    ("True", True, True),  # Nova spelling of str(True)
    ("false", False, True),
    ("true", False, False),
    ("true", "True", False),  # strings stay case-sensitive
    # = : at least
    ("= 4", 4, True),
    ("= 4", "8", True),
    ("= 4", 3.99, False),
    ("= 4", "-10", False),
    ("= 0.1", 0.1, True),
    # ==, !=
    ("== 4", "4.0", True),
    ("== 4", 4, True),
    ("== 4", 5, False),
    ("!= 4", 5, True),
    ("!= 4", "4", False),
    # >=, <=
    (">= 2", 2, True),
    (">= 2", 1, False),
    ("<= 2", 2, True),
    ("<= 2", "2.5", False),
    ("<= -1.5e3", -2000, True),
    # string comparisons
    ("s== bios", "bios", True),
    ("s== bios", "uefi", False),
    ("s!= bios", "uefi", True),
    ("s!= bios", "bios", False),
    ("s< 2.10", "2.09", True),
    ("s< 2.10", "2.9", False),  # string order, not numeric
    ("s<= b", "b", True),
    ("s<= b", "c", False),
    ("s> 2.10", "2.9", True),
    ("s> 2.10", "2.10", False),
    ("s>= b", "b", True),
    ("s>= b", "a", False),
    ("s== 5", 5, True),
    ("s== Intel Xeon", "Intel Xeon", True),  # the whole operand, not Nova's first word
    ("s== Intel Xeon", "Intel", False),
    # <in>: substring
    ("<in> EPYC", "AMD EPYC 9654", True),
    ("<in> EPYC", "Intel Xeon 8480", False),
    ("<in> Xeon 84", "Intel Xeon 8480", True),
    ("<in> 24", 1024, True),
    ("<in> ss", ["sse", "mmx"], True),
    ("<in> avx", ["sse", "mmx"], False),
    # <all-in>: membership
    ("<all-in> aes mmx", ["aes", "mmx", "aux"], True),
    ("<all-in> aes mmx", ("aes", "mmx"), True),
    ("<all-in> aes mmx", {"aes", "mmx"}, True),
    ("<all-in> aes mmx", ["aes"], False),
    ("<all-in> ae", ["aes"], False),  # Nova's substring-of-str(list) would say yes
    ("<all-in> aes mmx", "['aes', 'mmx', 'aux']", True),  # Nova: str(list)
    ("<all-in> aes mmx", '["aes", "mmx"]', True),  # JSON
    ("<all-in> aes mmx", "aes,mmx,avx2", True),  # Ironic-style comma list
    ("<all-in> aes mmx", "aes mmx avx2", True),  # /proc/cpuinfo-style flags
    ("<all-in> aes, mmx", "mmx, aes", True),
    ("<all-in> 1 2", [1, 2, 3], True),
    ("<all-in> 1 2", "[1, 2]", True),
    ("<all-in> txt", "['aes', 'mmx']", False),
    # <or>: any alternative
    ("<or> 1 <or> 10", "10", True),
    ("<or> 1 <or> 10", 1, True),
    ("<or> 1 <or> 10", "100", False),
    ("<or> AMD EPYC <or> Intel Xeon", "Intel Xeon", True),  # alternatives may span words
    ("<or> AMD EPYC <or> Intel Xeon", "Intel", False),
    ("<or> x", "x", True),
    ("<or> yes <or> true", True, True),
]


@pytest.mark.parametrize(("req", "value", "expected"), OPERATOR_CASES)
def test_operator(req: str, value: object, expected: bool) -> None:
    assert matches(req, value) is expected
    assert validate(req) is None


def test_every_operator_is_covered_both_ways() -> None:
    seen = {(parse(req).op, expected) for req, _value, expected in OPERATOR_CASES}
    for op in [*OPERATORS, ""]:
        assert (op, True) in seen and (op, False) in seen, op


# One well-formed requirement per operator, for the "never matches" edge cases.
ONE_OF_EACH = [
    "uefi",
    "= 1",
    "== 1",
    "!= 1",
    ">= 1",
    "<= 1",
    "s== a",
    "s!= a",
    "s< a",
    "s<= a",
    "s> a",
    "s>= a",
    "<in> a",
    "<all-in> a",
    "<or> a <or> b",
]
UNREADABLE: list[object] = [
    None,
    {"a": 1},
    b"a",
    object(),
    1 + 2j,
    float("nan"),
    float("inf"),
    float("-inf"),
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    [[1], {"a"}],  # a list of things with no text form
]


@pytest.mark.parametrize("req", ONE_OF_EACH)
@pytest.mark.parametrize("value", UNREADABLE, ids=repr)
def test_missing_or_unreadable_values_never_match(req: str, value: object) -> None:
    assert validate(req) is None
    assert matches(req, value) is False


@pytest.mark.parametrize(
    ("req", "value", "expected"),
    [
        # a number operator wants a number: no match, even for "!="
        ("!= 4", "four", False),
        ("!= 4", None, False),
        ("= 1", True, False),  # bools are not numbers
        ("= 0", False, False),
        ("= 1", [5], False),
        ("= 1", "1_000", False),  # Python-only literals are not numbers
        ("= 1", "0x10", False),
        ("= 1", "١٢", False),  # non-ASCII digits
        ("= 1", " 12 ", True),
        ("= 1", "1e3", True),
        ("= 1", ".5", False),
        ("= 1", "nan", False),
        ("= 1", "NaN", False),
        ("= 1", "inf", False),
        ("= 1", "-Infinity", False),
        ("!= 1", float("nan"), False),
        ("= 1", Decimal("2"), True),
        ("= 1", "1e99999999999999999999999", False),  # beyond decimal's exponent range
        # huge numbers are compared exactly, never OverflowError
        ("= 4", HUGE, True),
        ("= 4", HUGE_TEXT, True),
        ("<= 4", HUGE, False),
        ("== 1e400", HUGE, True),
        ("== 1e400", HUGE + 1, False),
        (f">= {HUGE_TEXT}", HUGE, True),
        (f">= {HUGE_TEXT}", float("inf"), False),
        ("= 4", BEYOND_STR, True),
        ("<= 4", -BEYOND_STR, True),
        ("4", BEYOND_STR, False),  # no text form: str() would raise
        ("<in> 1", BEYOND_STR, False),
        ("== 4", "4.0000000000000000001", False),  # exact, where floats would say equal
        ("== 0.1", 0.1, True),  # a float means its shortest repr, not its binary expansion
        ("== 0.3", 0.1 + 0.2, False),
        ("= 1e16", 1e16, True),
        # unicode
        ("s== Ünïcødé", "Ünïcødé", True),
        ("Ünïcødé", "Ünïcødé", True),
        ("Ünïcødé", "U\u0308nïcødé", False),  # no normalisation: other code points
        ("<in> 日本", "東京 日本", True),
        ("<or> 東京 <or> 大阪", "大阪", True),
        ("<all-in> ж щ", ["щ", "ж", "ы"], True),
        ("s< ß", "s", True),
        ("🙂", "🙂", True),
        # whitespace is not significant
        ("  s==   Intel   Xeon  ", "Intel Xeon", True),
        ("s== Intel Xeon", " Intel\tXeon\n", True),
        ("  uefi\n", "uefi", True),
        ("<or>   1   <or>10", "1", False),  # "<or>10" is not a marker: one alternative "1 <or>10"
        ("\u00a0=\u00a04\u00a0", 5, True),  # non-breaking spaces are whitespace too
        # lists where they make no sense
        ("s== a", ["a"], False),
        ("uefi", ["uefi"], False),
        ("<all-in> a", {"a": 1}, False),
        ("<all-in> a", "{'a': 1}", False),  # bracketed but not a list: no guessing
        ("<all-in> a", "[a, b", False),
        ("<all-in> a", "[" * 10_000, False),  # too deep for the parsers
        ("<all-in> a", "[" * 10_000 + "]" * 10_000, False),
    ],
    ids=short_id,
)
def test_edge_cases(req: str, value: object, expected: bool) -> None:
    assert matches(req, value) is expected


@pytest.mark.parametrize(
    ("req", "error"),
    [
        ("= abc", "'= abc': '=' needs a number"),
        (">= lots", "'>= lots': '>=' needs a number"),
        ("=", "'=': '=' needs a number"),
        ("= 4 5", "'= 4 5': '=' needs a number"),
        ("== nan", "'== nan': '==' needs a number"),
        ("<= inf", "'<= inf': '<=' needs a number"),
        ("!= 1_000", "'!= 1_000': '!=' needs a number"),
        ("= 1e99999999999999999999999", "'= 1e99999999999999999999999': '=' needs a number"),
        ("s==", "'s==': 's==' needs a value"),
        ("  s<   ", "'s<': 's<' needs a value"),
        ("<in>", "'<in>': '<in>' needs a value"),
        ("<all-in>", "'<all-in>': '<all-in>' needs at least one item"),
        ("<all-in> , ,", "'<all-in> , ,': '<all-in>' needs at least one item"),
        ("<or>", "'<or>': every '<or>' needs a value after it"),
        ("<or> a <or>", "'<or> a <or>': every '<or>' needs a value after it"),
        ("<or> <or> a", "'<or> <or> a': every '<or>' needs a value after it"),
        ("a <or> b", "'a <or> b': '<or>' must come first"),
        ("s== a <or> b", "'s== a <or> b': '<or>' must come first"),
        ("", "'': the requirement is empty"),
        (" \t\n", "'': the requirement is empty"),
        (">=2", "'>=2': put a space after the operator '>='"),
        ("=4", "'=4': put a space after the operator '='"),
        ("s==bios", "'s==bios': put a space after the operator 's=='"),
        ("<in>EPYC", "'<in>EPYC': put a space after the operator '<in>'"),
        ("> 2", "'> 2': unknown operator '>'"),
        ("< 2", "'< 2': unknown operator '<'"),
        ("=> 2", "'=> 2': unknown operator '=>'"),
        ("<foo> x", "'<foo> x': unknown operator '<foo>'"),
        ("<IN> x", "'<IN> x': unknown operator '<IN>'"),  # operators are case-sensitive
        ("S== x", "'S== x': unknown operator 'S=='"),
    ],
)
def test_validate_names_the_problem_and_such_requirements_never_match(req: str, error: str) -> None:
    assert validate(req) == error
    for value in ("x", "2", 2, "a b", ["x"], True, None):
        assert matches(req, value) is False


@pytest.mark.parametrize("req", [*ONE_OF_EACH, "= 1e400", "<or> a b <or> c", "<in> <", "sales"])
def test_validate_accepts_well_formed(req: str) -> None:
    assert validate(req) is None


def test_non_string_requirement_is_refused_not_raised() -> None:
    assert validate(4) == "a requirement must be a string, not int"  # type: ignore[arg-type]
    assert matches(["= 1"], 2) is False  # type: ignore[arg-type]


def test_parse_is_cached_and_reusable() -> None:
    req = parse("= 4")
    assert isinstance(req, Requirement) and req.op == "=" and req.error is None
    assert parse("= 4") is req
    assert [req.matches(v) for v in (3, 4, "5", None)] == [False, True, True, False]


# ---- properties ------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**6000),
    st.floats(),  # NaN and infinities included
    st.decimals(),  # NaN, sNaN and infinities included
    st.text(),
    st.from_regex(r"\s*[+-]?\d{0,500}(\.\d*)?([eE][+-]?\d{1,30})?\s*", fullmatch=True),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=5),
    st.tuples(SCALARS, SCALARS),
    st.dictionaries(st.text(max_size=3), SCALARS, max_size=3),
    st.binary(max_size=5),
    st.lists(st.text(), max_size=5).map(str),  # list literals as node strings
)
REQUIREMENTS = st.one_of(
    st.text(),
    st.builds(
        lambda op, rest: f"{op} {rest}", st.sampled_from(sorted(OPERATORS)), st.text(max_size=30)
    ),
    st.lists(st.text(max_size=5), max_size=4).map(lambda alts: " <or> ".join(["", *alts])),
)


@given(REQUIREMENTS, VALUES)
@example("= 4", HUGE)
@example("= 1", "1" + "0" * 5000)
@example("<all-in> a", "[" * 5000)
@example("<or>", "x")
def test_matching_never_raises(req: str, value: object) -> None:
    parsed = parse(req)
    result = matches(req, value)
    assert isinstance(result, bool)
    if parsed.error is not None:
        assert result is False
    assert validate(req) == parsed.error


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(finite, finite)
def test_at_least_agrees_with_float_comparison(have: float, want: float) -> None:
    req = f"= {want!r}"
    assert validate(req) is None
    assert matches(req, have) is (have >= want)
    assert matches(req, repr(have)) is (have >= want)


@given(st.sampled_from(["=", "==", "!=", ">=", "<="]), finite, finite)
def test_numeric_operators_agree_with_float_comparison(op: str, have: float, want: float) -> None:
    expected = {
        "=": have >= want,
        "==": have == want,
        "!=": have != want,
        ">=": have >= want,
        "<=": have <= want,
    }[op]
    assert matches(f"{op} {want!r}", have) is expected


@given(
    st.integers(min_value=-(10**600), max_value=10**600),
    st.integers(min_value=-(10**600), max_value=10**600),
)
def test_integers_of_any_size_compare_exactly(have: int, want: int) -> None:
    assert matches(f">= {want}", have) is (have >= want)
    assert matches(f"== {want}", str(have)) is (have == want)


def _usable(text: str) -> bool:
    """An operand survives as itself: something left after stripping, no '<or>' word."""
    return bool(text.split()) and "<or>" not in text.split()


operand = st.text(min_size=1).filter(_usable)


@given(st.lists(operand, min_size=1, max_size=6), st.data())
def test_or_matches_any_listed_value(alternatives: list[str], data: st.DataObject) -> None:
    value = data.draw(st.sampled_from(alternatives))
    req = " ".join(f"<or> {alt}" for alt in alternatives)
    assert validate(req) is None
    assert matches(req, value) is True


@given(st.lists(operand, min_size=1, max_size=6), operand)
def test_or_rejects_unlisted_value(alternatives: list[str], value: str) -> None:
    assume(" ".join(value.split()) not in {" ".join(a.split()) for a in alternatives})
    assert matches(" ".join(f"<or> {alt}" for alt in alternatives), value) is False


@given(operand, st.text())
def test_string_equal_and_not_equal_are_complements(want: str, value: str) -> None:
    assert matches(f"s== {want}", value) is not matches(f"s!= {want}", value)
    assert matches(f"s< {want}", value) is not matches(f"s>= {want}", value)
    assert matches(f"s> {want}", value) is not matches(f"s<= {want}", value)


@given(operand)
def test_a_value_equals_itself(value: str) -> None:
    assert matches(f"s== {value}", value)
    assert matches(f"<in> {value}", value)
    assume(validate(value) is None)  # a plain value that looks like an operator is refused
    assert matches(value, value)


@given(st.lists(st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True), min_size=1), st.data())
def test_all_in_accepts_any_subset(members: list[str], data: st.DataObject) -> None:
    wanted = data.draw(st.lists(st.sampled_from(members), min_size=1))
    req = "<all-in> " + " ".join(wanted)
    for form in (members, str(members), ",".join(members), " ".join(members)):
        assert matches(req, form) is True


@given(finite)
def test_text_operators_see_floats_as_python_prints_them(value: float) -> None:
    assert matches(f"s== {value}", value)
