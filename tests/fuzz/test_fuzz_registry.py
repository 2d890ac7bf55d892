"""Fuzzing the point-registry loader (`ingest.registry.load_registry`) with Hypothesis: random
bytes, CSV-ish text, structured CSV with hostile cells, YAML structures and YAML tags. The
loader may only ever return a valid Registry or raise `RegistryError` whose every problem names
a line of the file; a bad row never hides another; YAML tags never run code."""

from __future__ import annotations

import atexit
import csv
import io
import math
import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ingest.registry import COLUMNS, LIMITS, RegistryError, load_registry
from ingest.units import units_for

# Bounded: ~200 examples, no per-example deadline (a shared 2-core CI machine is noisy).
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_DIR = Path(tempfile.mkdtemp(prefix="hw-fuzz-registry-"))
atexit.register(shutil.rmtree, _DIR, True)


def _load(data: bytes, suffix: str):
    """load_registry on `data` as a file; returns the Registry or the RegistryError."""
    path = _DIR / f"registry.{suffix}"
    path.write_bytes(data)
    try:
        return load_registry(path)
    except RegistryError as exc:
        return exc


def _n_lines(data: bytes) -> int:
    # Every character CSV or YAML may take as a line break counts (splitlines knows them all).
    return len(data.decode("utf-8", errors="replace").splitlines()) + 1


def check(data: bytes, suffix: str):
    """The invariants of any outcome; returns it."""
    out = _load(data, suffix)
    if isinstance(out, RegistryError):
        event("refused")
        assert out.problems, "an error without problems"
        for p in out.problems:
            assert 1 <= p.line <= _n_lines(data), (p, data)
            assert p.message.strip()
            assert f"line {p.line}:" in str(out)
        return out
    event("accepted" if len(out) else "accepted, empty")
    keys = set()
    for pt in out:
        for code in (pt.enterprise_code, pt.tag, pt.gateway_code):
            assert not any(c in code for c in "/+#") and not any(c.isspace() for c in code)
        assert pt.enterprise_code and pt.tag and pt.parameter
        assert pt.unit in units_for(pt.parameter)
        limits = [v for v in (pt.ll, pt.l, pt.h, pt.hh) if v is not None]
        assert all(math.isfinite(v) for v in limits)
        assert limits == sorted(limits)
        if pt.range_low is not None and pt.range_high is not None:
            assert pt.range_low < pt.range_high
            assert all(pt.range_low <= v <= pt.range_high for v in limits)
        assert 0 < pt.expected_interval_s <= 7 * 24 * 3600
        assert (pt.lat is None) == (pt.lon is None)
        assert pt.key not in keys
        keys.add(pt.key)
    return out


# ------------------------------------------------------------------------------ raw input


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["csv", "yaml", "yml"]))
def test_random_bytes(data, suffix):
    check(data, suffix)


_CSV_TOKENS = [
    ",",
    '"',
    '""',
    "\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    ";",
    "\ufeff",
    "\x00",
    *COLUMNS,
    "E1",
    "GW1",
    "AT-1",
    "gas.NH3",
    "level",
    "ppm",
    "m",
    "1",
    "-1",
    "1e999",
    "nan",
    "inf",
    "0",
    "潜江",
]


@FUZZ
@given(st.lists(st.sampled_from(_CSV_TOKENS), max_size=120).map("".join))
def test_csv_like_text(text):
    check(text.encode("utf-8"), "csv")


_YAML_TOKENS = [
    "points:",
    "\n",
    "- ",
    "  ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    '"',
    "~",
    "null",
    "&a ",
    "*a",
    "!!str ",
    "!!int ",
    "!!binary ",
    "? ",
    "|",
    ">",
    "#",
    "---",
    "...",
    *COLUMNS,
    "E1",
    "AT-1",
    "gas.NH3",
    "ppm",
    "1",
    ".inf",
    ".nan",
]


@FUZZ
@given(st.lists(st.sampled_from(_YAML_TOKENS), max_size=80).map("".join))
def test_yaml_like_text(text):
    check(text.encode("utf-8"), "yaml")


# ------------------------------------------------------------------------------ structured

_NUM = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["", "1e999", "-1e999", "nan", "NaN", "inf", "0x10", "1_000", "1,5", " 3 "]),
)
_CELL = {
    "enterprise_code": st.sampled_from(["E1", "E2", "E/1", "E 1", "E+", "", "企业"]),
    "industry": st.sampled_from(["hazchem", "fireworks", "HAZCHEM", "mining", ""]),
    "hazard_level": st.sampled_from(["", "1", "4", "5", "0", "一级"]),
    "gateway_code": st.sampled_from(["GW1", "GW2", "", "GW#", "G W"]),
    "tag": st.sampled_from(["AT-1", "AT-2", "LT-1", "", "A/T", "AT 3"]),
    "parameter": st.sampled_from(
        ["gas.NH3", "gas.CH4", "gas.O2", "gas.XX", "level", "temperature", "occupancy", "", "x"]
    ),
    "unit": st.sampled_from(["ppm", "mg/m3", "%LEL", "%", "%vol", "m", "°C", "kPa", "", "ft"]),
    "expected_interval_s": _NUM,
    "lat": _NUM,
    "lon": _NUM,
    "range_low": _NUM,
    "range_high": _NUM,
    **{k: _NUM for k in LIMITS},
}
_ANY_CELL = st.text(max_size=12)
# Values that are valid on their own (limits left empty, so they cannot disagree).
_GOOD = {
    "enterprise_code": st.sampled_from(["E1", "E2", "企业3"]),
    "industry": st.sampled_from(["hazchem", "fireworks", ""]),
    "hazard_level": st.sampled_from(["", "1", "4"]),
    "gateway_code": st.sampled_from(["GW1", "GW2", ""]),
    "expected_interval_s": st.sampled_from(["", "1", "60", "0.5"]),
    **{k: st.just("") for k in ("lat", "lon", "range_low", "range_high", *LIMITS)},
}


_PAIRS = [
    ("gas.NH3", "ppm"),
    ("gas.NH3", "mg/m3"),
    ("gas.CH4", "%LEL"),
    ("gas.O2", "%vol"),
    ("level", "m"),
    ("temperature", "°C"),
    ("pressure", "kPa"),
    ("occupancy", ""),
]


@st.composite
def csv_registry(draw) -> bytes:
    """A header holding the required columns (usually) in any order plus others; rows of
    plausible values with a few cells replaced by anything."""
    required = ["enterprise_code", "tag", "parameter", "unit"]
    pool = [c for c in (*COLUMNS, "vendor", "note") if c not in required]
    others = draw(st.lists(st.sampled_from(pool), max_size=20, unique=True))
    if draw(st.integers(0, 4)) == 0:  # missing or twice-named columns
        required = draw(st.lists(st.sampled_from([*required, *pool]), max_size=6))
    cols = draw(st.permutations([*required, *others]))
    if not cols:
        cols = ["tag"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for i in range(draw(st.integers(0, 8))):
        param, unit = draw(st.sampled_from(_PAIRS))
        row = {c: draw(_GOOD.get(c, _ANY_CELL)) for c in cols}
        row.update({"parameter": param, "unit": unit, "tag": f"T-{i}"})
        for c in draw(st.lists(st.sampled_from(cols), max_size=3)):
            row[c] = draw(st.one_of(_CELL.get(c, _ANY_CELL), _ANY_CELL))
        cells = [row[c] for c in cols]
        if draw(st.integers(0, 5)) == 0:
            cells = cells[: draw(st.integers(0, len(cells)))]  # a short row
        w.writerow(cells)
    return buf.getvalue().encode("utf-8")


@FUZZ
@given(csv_registry())
def test_structured_csv(data):
    check(data, "csv")


GOOD_ROW = {
    "enterprise_code": "E1",
    "gateway_code": "GW1",
    "parameter": "level",
    "unit": "m",
    "range_low": "0",
    "range_high": "12",
    "l": "1",
    "h": "10",
}


@FUZZ
@given(
    st.lists(st.sampled_from(["range_low", "h", "unit", "lat", "tag"]), min_size=1, max_size=6),
    st.integers(0, 20),
)
def test_every_bad_row_is_reported_with_its_line(bad_cols, n_good):
    """Bad rows among good ones: each bad row's own line is in the problems."""
    cols = [*GOOD_ROW, "tag", "lat", "lon"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    bad_lines = []
    line = 1
    rows = [None] * n_good + list(bad_cols)
    for i, bad in enumerate(rows):
        row = {**GOOD_ROW, "tag": f"T-{i}", "lat": "", "lon": ""}
        if bad == "range_low":
            row["range_low"] = "zero"
        elif bad == "h":
            row["h"] = "20"  # above the range
        elif bad == "unit":
            row["unit"] = "ppm"  # not a level unit
        elif bad == "lat":
            row["lat"] = "30.4"  # without lon
        elif bad == "tag":
            row["tag"] = f"T {i}"
        line += 1
        if bad is not None:
            bad_lines.append(line)
        w.writerow([row[c] for c in cols])
    out = check(buf.getvalue().encode(), "csv")
    assert isinstance(out, RegistryError)
    assert sorted({p.line for p in out.problems}) == bad_lines


_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.sampled_from(["E1", "AT-1", "gas.NH3", "ppm", "level", "m", "GW1"]),
)
_YAML_DATA = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(COLUMNS), st.text(max_size=6)), inner, max_size=6
        ),
    ),
    max_leaves=30,
)


@FUZZ
@given(st.one_of(_YAML_DATA, st.fixed_dictionaries({"points": _YAML_DATA})))
def test_yaml_structures(data):
    check(yaml.safe_dump(data, allow_unicode=True).encode("utf-8"), "yaml")


_TAGS = [
    '!!python/object/apply:os.system ["touch {s}"]',
    "!!python/object/apply:builtins.exec [\"open('{s}', 'w')\"]",
    '!!python/object/new:builtins.open ["{s}", "w"]',
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:builtins.object {{}}",
    "!!python/tuple [1, 2]",
    "!custom {s}",
]


@FUZZ
@given(
    st.sampled_from(_TAGS),
    st.sampled_from(["tag", "unit", "zone", "range_low", "extra"]),
    st.booleans(),
)
def test_yaml_tags_never_run_code(tmp_path_factory, tag, column, whole_row):
    sentinel = tmp_path_factory.getbasetemp() / "registry-tag-ran"
    payload = tag.format(s=sentinel)
    row = f"- {{enterprise_code: E1, tag: AT-1, parameter: level, unit: m, {column}: {payload}}}"
    if whole_row:
        row = f"- {payload}"
    check(f"points:\n{row}\n".encode(), "yaml")
    assert not sentinel.exists(), "a YAML tag ran code"


# Found by this fuzzing and fixed in ingest/registry.py (commit e174625); kept as regressions.


def test_deeply_nested_yaml_is_a_registry_error():
    out = _load(("points: " + "[" * 1000 + "]" * 1000).encode(), "yaml")
    assert isinstance(out, RegistryError)


def test_non_scalar_top_level_key_is_a_registry_error():
    out = _load(b"{[a]: 1}\n", "yaml")
    assert isinstance(out, RegistryError)
    assert [p.line for p in out.problems] == [1, 1]
