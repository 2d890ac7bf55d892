"""Fuzzing rule files through `rules.loader.load_ruleset` with Hypothesis: YAML structures shaped
like rule files (every rule kind, every field, hostile values), YAML-ish text, and YAML tags
that would construct objects or run code. Loading may only return a RuleSet whose set points
are finite and ordered, or raise `RuleFileError` naming the file; a tag never runs code."""

from __future__ import annotations

import atexit
import math
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ingest.registry import parse_registry
from rules import schema
from rules.loader import RuleFileError, RuleSet, load_ruleset

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

REGISTRY_CSV = """\
enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,gateway_code,tag,parameter,unit,range_low,range_high,ll,l,h,hh,expected_interval_s,inlet_valve
E1,甲,hazchem,D1,HZ1,2,Z1,GW1,AT-1,gas.NH3,ppm,0,100,,,,,10,
E1,甲,hazchem,D1,HZ1,2,Z1,GW1,AT-2,gas.NH3,ppm,0,100,,,,,10,
E1,甲,hazchem,D1,HZ1,2,Z1,GW1,AT-3,gas.CH4,%LEL,0,100,,,,,10,
E1,甲,hazchem,D1,HZ1,2,Z2,GW2,LT-1,level,m,0,12,1,2,10,11,5,XV-1
E1,甲,hazchem,D1,HZ1,2,Z2,GW2,XV-1,valve,%,0,100,,,,,5,
E1,甲,hazchem,D1,HZ1,2,Z2,GW2,OX-1,gas.O2,%vol,0,30,,,,,10,
E2,乙,fireworks,D2,,,W1,GW1,HC-1,occupancy,persons,0,20,,,3,,30,
E2,乙,fireworks,D2,,,W1,GW1,TT-1,temperature,°C,-20,80,,,,,30,
E2,乙,fireworks,D2,,,W1,GW1,EV-1,event,,,,,,,,60,
"""
REGISTRY = parse_registry(REGISTRY_CSV.encode(), "fuzz-registry.csv")
_DIR = Path(tempfile.mkdtemp(prefix="hw-fuzz-rules-"))
atexit.register(shutil.rmtree, _DIR, True)

RULE_MODELS = (
    schema.LimitRule,
    schema.OccupancyRule,
    schema.OfflineRule,
    schema.FaultRule,
    schema.StuckRule,
    schema.RateRule,
    schema.VoteRule,
    schema.InterlockRule,
    schema.EventRule,
)
# Every key any rule kind takes (by its YAML name), plus some that none does.
_ALL_KEYS = {(f.alias or n) for m in RULE_MODELS for n, f in m.model_fields.items()}
RULE_KEYS = [*sorted(_ALL_KEYS - {"kind"}), "levels_", "severity", "__class__", "for_"]
MATCH_KEYS = [*schema.Match.model_fields, "district", ""]
LEVELS = ["L1", "L2", "LL", "L", "H", "HH", "HHH", "l1"]


def _load(text: str):
    """load_ruleset on `text` as the only rule file; returns the RuleSet or the error."""
    for old in _DIR.iterdir():
        old.unlink()
    (_DIR / "fuzz.rules.yaml").write_text(text, encoding="utf-8")
    try:
        return load_ruleset(_DIR, REGISTRY)
    except RuleFileError as exc:
        return exc


def check(text: str):
    out = _load(text)
    if isinstance(out, RuleFileError):
        event("refused")
        assert out.problems, "an error without problems"
        for p in out.problems:
            assert p.file and p.message.strip(), p
            assert p.expected, p  # what was expected is always said
        return out
    assert isinstance(out, RuleSet)
    event("accepted")
    for key, pr in out.points.items():
        assert key in REGISTRY
        if pr.limit is not None:
            for side in (pr.limit.high, pr.limit.low):
                values = [t.value for t in side]
                assert all(math.isfinite(v) for v in values), (key, side)
            assert pr.limit.for_ms >= 0 and pr.limit.off_ms >= 0
            assert math.isfinite(pr.limit.deadband) and pr.limit.deadband >= 0
    return out


def test_the_fuzz_registry_loads_with_the_default_packs():
    """Otherwise every generated file would be refused for the registry's sake."""
    out = _load("rules: []\n")
    assert isinstance(out, RuleSet), out
    assert len(out.points) == len(REGISTRY)


# ------------------------------------------------------------------------------ strategies

_DURATION = st.one_of(
    st.sampled_from(["10s", "5m", "1h", "250ms", "1.5h", "0", "2d", "-1s", "10 parsecs", "s"]),
    st.integers(-5, 10**6),
    st.floats(-10.0, 1e7, allow_nan=False),
)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(),  # NaN and infinities included: the loader refuses them by name
    st.text(max_size=12),
    _DURATION,
    st.sampled_from(["AT-*", "gas.*", "E1", "Z1", "GW1", "LT-1", "XV-1", "HZ1", "hazchem", "*"]),
)
_ANY = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_MATCH = st.one_of(
    st.dictionaries(
        st.sampled_from(MATCH_KEYS),
        st.one_of(_SCALAR, st.lists(st.sampled_from(["E1", "E2", "AT-*", "gas.*", "Z*"]))),
        max_size=3,
    ),
    _ANY,
)
_LEVELS = st.one_of(
    # ascending values, so that some are valid
    st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=4, unique=True).flatmap(
        lambda vs: st.permutations(LEVELS).map(lambda ls: dict(zip(ls, sorted(vs), strict=False)))
    ),
    st.dictionaries(st.sampled_from(LEVELS), _SCALAR, max_size=4),
    _ANY,
)


def _value(key: str):
    if key == "match":
        return _MATCH
    if key == "levels":
        return _LEVELS
    if key in ("for", "off_delay", "within", "hold", "gateway_window"):
        return _DURATION
    if key == "name":
        return st.one_of(st.sampled_from(["r1", "r2", "gas.limit", "x y", "", "a" * 90]), _SCALAR)
    return st.one_of(_SCALAR, _ANY)


_KIND_KEYS = {
    m.model_fields["kind"].annotation.__args__[0]: sorted(
        {(f.alias or n) for n, f in m.model_fields.items()} - {"kind", "name"}
    )
    for m in RULE_MODELS
}


@st.composite
def rule(draw):
    if draw(st.booleans()):
        # well-formed: a known kind, a valid name, only that kind's keys (values still wild)
        kind = draw(st.sampled_from(schema.RULE_KINDS))
        r = {"kind": kind, "name": f"r{draw(st.integers(0, 3))}"}
        for key in draw(st.lists(st.sampled_from(_KIND_KEYS[kind]), max_size=4, unique=True)):
            r[key] = draw(_value(key))
        return r
    r = {"kind": draw(st.one_of(st.sampled_from(schema.RULE_KINDS), _SCALAR))}
    for key in draw(st.lists(st.sampled_from(["name", "match", *RULE_KEYS]), max_size=6)):
        r[key] = draw(_value(key))
    if draw(st.integers(0, 3)) == 0:
        return draw(_ANY)  # not even a mapping
    return r


@st.composite
def rule_file(draw):
    doc: dict = {}
    if draw(st.booleans()):
        doc["version"] = draw(st.one_of(st.just(1), _SCALAR))
    if draw(st.integers(0, 3)) == 0:
        doc["packs"] = draw(
            st.one_of(
                st.dictionaries(
                    st.sampled_from(["gbt50493", "gbz2", "nope"]),
                    st.sampled_from(["2019", "2019-amend1", "1999", ""]),
                    max_size=2,
                ),
                _ANY,
            )
        )
    doc["rules"] = draw(st.one_of(st.lists(rule(), max_size=4), _ANY))
    if draw(st.integers(0, 5)) == 0:
        doc[draw(st.text(max_size=8))] = draw(_ANY)
    return doc


@FUZZ
@given(rule_file())
def test_rule_file_structures(doc):
    check(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


_TOKENS = [
    "rules:",
    "\n",
    "- ",
    "  ",
    ": ",
    "kind: ",
    "limit",
    "vote",
    "offline",
    "name: ",
    "r1",
    "match: ",
    "{tag: AT-1}",
    "levels: ",
    "{L1: 10, L2: 20}",
    "for: ",
    "10s",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    '"',
    "~",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "!!set ",
    "? ",
    "|",
    "#",
    "---",
    "1",
    "-1",
    "1e3",
    ".inf",
    ".nan",
]


@FUZZ
@given(st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join))
def test_rule_file_text(text):
    check(text)


# ------------------------------------------------------------------------------ no code

_TAGS = [
    '!!python/object/apply:os.system ["touch {s}"]',
    "!!python/object/apply:builtins.exec [\"open('{s}', 'w')\"]",
    '!!python/object/new:builtins.open ["{s}", "w"]',
    "!!python/object/apply:subprocess.check_call [[touch, {s}]]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:builtins.object {{}}",
    "!!python/tuple [1, 2]",
    "!custom {s}",
]
_MARK = "__FUZZ_TAG__"


@settings(FUZZ, max_examples=100)  # each example loads a file that fails early: ~50 ms
@given(
    rule_file().filter(lambda d: isinstance(d.get("rules"), list) and d["rules"]),
    st.sampled_from(_TAGS),
    st.data(),
)
def test_yaml_tags_are_refused_and_never_run(tmp_path_factory, doc, tag, data):
    """A tag anywhere in a rule file (as a whole rule, a field, a match, a level) is refused
    with its own message, and the code it names never runs."""
    sentinel = tmp_path_factory.getbasetemp() / "rules-tag-ran"
    rules = doc["rules"]
    i = data.draw(st.integers(0, len(rules) - 1))
    where = data.draw(st.sampled_from(["rule", "field", "match", "level"]))
    if where == "rule" or not isinstance(rules[i], dict):
        rules[i] = _MARK
    elif where == "field":
        rules[i]["description"] = _MARK
    elif where == "match":
        rules[i]["match"] = {"tag": _MARK}
    else:
        rules[i]["levels"] = {"L1": _MARK}
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    assert _MARK in text
    text = text.replace(f"'{_MARK}'", _MARK).replace(_MARK, tag.format(s=sentinel))
    out = _load(text)
    assert not sentinel.exists(), "a YAML tag ran code"
    assert isinstance(out, RuleFileError), f"a tagged rule file was accepted:\n{text}"
    assert any("tags that construct objects or run code" in p.expected for p in out.problems), [
        str(p) for p in out.problems
    ]


def test_every_python_tag_is_refused_with_its_line(tmp_path: Path):
    sentinel = tmp_path / "ran"
    for tag in _TAGS:
        text = f"rules:\n- kind: limit\n  name: r1\n  description: {tag.format(s=sentinel)}\n"
        out = _load(text)
        assert isinstance(out, RuleFileError), tag
        (p,) = out.problems
        assert ":4:" in p.message, p.message  # the line of the tag
        assert "tags that construct objects or run code are not allowed" in p.message
        assert not sentinel.exists()


# ------------------------------------------------------------------------------ regressions
# Found by this fuzzing and fixed in rules/loader.py (commit 8cf32a4); kept as regressions.


def test_recursive_alias_is_a_rule_file_error():
    assert isinstance(_load("rules: &a [*a]"), RuleFileError)


def test_alias_bomb_is_refused_quickly():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    text = "\n".join([*lines, "rules: *a8"]) + "\n"
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from ingest.registry import parse_registry
        from rules.loader import RuleFileError, load_ruleset
        Path(sys.argv[1], "bomb.rules.yaml").write_text({text!r})
        reg = parse_registry({REGISTRY_CSV.encode()!r}, "r.csv")
        try:
            load_ruleset(Path(sys.argv[1]), reg)
        except RuleFileError:
            print("refused")
        """
    )
    d = tempfile.mkdtemp(prefix="hw-fuzz-bomb-")
    try:
        r = subprocess.run(
            [sys.executable, "-c", code, d], capture_output=True, text=True, timeout=5
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a 700-byte rule file kept the loader busy for more than 5 s")
    assert r.stdout.strip() == "refused", r.stderr


def test_infinite_duration_is_a_rule_file_error():
    out = _load("rules:\n- kind: limit\n  name: r1\n  for: .inf\n")
    assert isinstance(out, RuleFileError)


def test_nan_set_point_is_refused():
    out = _load("rules:\n- kind: limit\n  name: r1\n  match: {tag: TT-1}\n  levels: {H: .nan}\n")
    assert isinstance(out, RuleFileError)


def test_deeply_nested_rule_file_is_a_rule_file_error():
    out = _load("rules: " + "[" * 1000 + "]" * 1000)
    assert isinstance(out, RuleFileError)
