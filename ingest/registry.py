"""Load and validate the point registry (CSV per DESIGN.md, or the same rows as YAML) into an
`ingest.model.Registry`. Every row is checked and every problem is reported at once, with its
line and column, so an engineer fixes a file in one pass instead of one error per run.

Gas points with empty limits keep them `None`: the rules stage fills them from its active
standard pack (rules may import ingest, not the other way round).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import yaml

from ingest.gases import all_gases
from ingest.model import Industry, Point, Registry
from ingest.units import NON_GAS_PARAMETERS, UnitError, canonical_unit, units_for

COLUMNS = (
    "enterprise_code",
    "enterprise_name",
    "industry",
    "district",
    "hazard_code",
    "hazard_level",
    "zone",
    "gateway_code",
    "tag",
    "parameter",
    "unit",
    "range_low",
    "range_high",
    "ll",
    "l",
    "h",
    "hh",
    "expected_interval_s",
    "lat",
    "lon",
)
REQUIRED_COLUMNS = ("enterprise_code", "tag", "parameter", "unit")
LIMITS = ("ll", "l", "h", "hh")
DEFAULT_EXPECTED_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class RegistryProblem:
    line: int  # 1-based line in the file (the header is line 1 of a CSV)
    column: str  # column / key name, "" for the whole row or file
    message: str

    def __str__(self) -> str:
        col = f" {self.column}:" if self.column else ""
        return f"line {self.line}:{col} {self.message}"


class RegistryError(ValueError):
    """The registry file has problems; `.problems` lists every one of them."""

    def __init__(self, path: Path | str, problems: Iterable[RegistryProblem]) -> None:
        self.path = str(path)
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
        head = f"{self.path}: {len(self.problems)} problem(s) in the point registry"
        super().__init__("\n".join([head, *(f"  {self.path}:{p}" for p in self.problems)]))


@dataclass(slots=True)
class _Row:
    line: int
    cells: dict[str, str]
    col_lines: dict[str, int]


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def load_registry(path: Path | str) -> Registry:
    """Read and validate a registry file (`.csv`, `.yaml`/`.yml`); raise `RegistryError`
    listing every problem. The registry `version` is the first 12 hex of the file's sha256."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError(
            path, [RegistryProblem(0, "", f"cannot read file: {exc.strerror}")]
        ) from None
    return parse_registry(data, path.name, source=str(path))


def parse_registry(data: bytes, name: str, source: str | None = None) -> Registry:
    """Validate registry content; `name` picks the format by suffix (.csv, .yaml, .yml)."""
    source = source or name
    try:
        text = data.decode("utf-8-sig")  # Excel writes a BOM in front of UTF-8 CSV
    except UnicodeDecodeError as exc:
        raise RegistryError(
            source, [RegistryProblem(1, "", f"not UTF-8 text (byte {exc.start}); save as UTF-8")]
        ) from None
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    problems: list[RegistryProblem] = []
    if suffix == "csv":
        rows = _csv_rows(text, problems)
    elif suffix in ("yaml", "yml"):
        rows = _yaml_rows(text, problems)
    else:
        raise RegistryError(
            source,
            [
                RegistryProblem(
                    0, "", f"unknown registry format {suffix!r}; expected .csv, .yaml or .yml"
                )
            ],
        )
    points = _validate(rows, problems)
    if problems:
        raise RegistryError(source, problems)
    return Registry(points, version=_version(data))


def _csv_rows(text: str, problems: list[RegistryProblem]) -> list[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        problems.append(
            RegistryProblem(1, "", "empty file; expected a header row " + ",".join(COLUMNS))
        )
        return []
    except csv.Error as exc:
        problems.append(RegistryProblem(1, "", f"unreadable CSV: {exc}"))
        return []
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            problems.append(RegistryProblem(1, n, "column appears twice in the header"))
        seen.add(n)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        problems.append(
            RegistryProblem(
                1,
                "",
                f"missing required column(s) {', '.join(missing)}; header has {', '.join(names)}",
            )
        )
        return []
    rows: list[_Row] = []
    start = reader.line_num + 1
    try:
        for record in reader:
            line = start
            start = reader.line_num + 1
            if not any(c.strip() for c in record):
                continue  # blank line
            if len(record) != len(names):
                problems.append(
                    RegistryProblem(
                        line, "", f"{len(record)} cells but the header has {len(names)} columns"
                    )
                )
                continue
            cells = {n: v.strip() for n, v in zip(names, record, strict=True)}
            rows.append(_Row(line, cells, {}))
    except csv.Error as exc:
        problems.append(RegistryProblem(reader.line_num, "", f"unreadable CSV: {exc}"))
    return rows


def _yaml_rows(text: str, problems: list[RegistryProblem]) -> list[_Row]:
    """Rows from `points: [ {column: value, ...}, ... ]` (or a bare list), keeping line numbers."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problems.append(
            RegistryProblem(line, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")
        )
        return []
    except RecursionError:
        # yaml.compose recurses once per nesting level; a hostile file must not crash us.
        problems.append(RegistryProblem(1, "", "YAML nested too deeply to be a point registry"))
        return []
    if isinstance(root, yaml.MappingNode):
        for k, v in root.value:
            if not isinstance(k, yaml.ScalarNode):
                problems.append(
                    RegistryProblem(k.start_mark.line + 1, "", "keys must be plain names")
                )
                continue
            if k.value == "points":
                root = v
                break
            problems.append(
                RegistryProblem(k.start_mark.line + 1, k.value, "unknown key; expected 'points'")
            )
        else:
            problems.append(RegistryProblem(1, "", "expected a 'points' list"))
            return []
    if not isinstance(root, yaml.SequenceNode):
        problems.append(
            RegistryProblem(1, "", "expected a list of points (or 'points:' with a list)")
        )
        return []
    rows: list[_Row] = []
    for item in root.value:
        line = item.start_mark.line + 1
        if not isinstance(item, yaml.MappingNode):
            problems.append(RegistryProblem(line, "", "expected a mapping of column: value"))
            continue
        cells: dict[str, str] = {}
        col_lines: dict[str, int] = {}
        ok = True
        for k, v in item.value:
            key = str(k.value).strip()
            if key in cells:
                problems.append(RegistryProblem(k.start_mark.line + 1, key, "key appears twice"))
            col_lines[key] = k.start_mark.line + 1
            if not isinstance(v, yaml.ScalarNode):
                problems.append(
                    RegistryProblem(v.start_mark.line + 1, key, "expected a single value")
                )
                ok = False
                continue
            # YAML null (`~`, `null`, empty) is an empty cell, as in the CSV.
            is_null = v.tag == "tag:yaml.org,2002:null" or (
                v.style is None and v.value in ("", "~", "null", "Null", "NULL")
            )
            cells[key] = "" if is_null else str(v.value).strip()
        if ok:
            rows.append(_Row(line, cells, col_lines))
    return rows


def _validate(rows: list[_Row], problems: list[RegistryProblem]) -> list[Point]:
    points: list[Point] = []
    first_line: dict[tuple[str, str], int] = {}
    known_gases = all_gases()
    for row in rows:
        c = row.cells
        bad = len(problems)

        def add(col: str, msg: str, row: _Row = row) -> None:
            problems.append(RegistryProblem(row.col_lines.get(col, row.line), col, msg))

        def num(col: str, c: Mapping[str, str] = c) -> float | None:
            s = c.get(col, "")
            if s == "":
                return None
            try:
                v = float(s)
            except ValueError:
                add(col, f"expected a number, got {s!r}")
                return None
            if not math.isfinite(v):
                add(col, f"expected a finite number, got {s!r}")
                return None
            return v

        for col in REQUIRED_COLUMNS:
            if col != "unit" and not c.get(col):
                add(col, "required, but empty")
        ent = c.get("enterprise_code", "")
        tag = c.get("tag", "")
        for col, val in (
            ("enterprise_code", ent),
            ("tag", tag),
            ("gateway_code", c.get("gateway_code", "")),
        ):
            if any(ch in val for ch in "/+#") or any(ch.isspace() for ch in val):
                add(
                    col,
                    f"{val!r} must not contain '/', '+', '#' or spaces "
                    "(it is part of MQTT topics and point keys)",
                )

        industry_s = c.get("industry", "") or "hazchem"
        try:
            industry = Industry(industry_s.lower())
        except ValueError:
            add("industry", f"expected hazchem or fireworks, got {industry_s!r}")
            industry = Industry.HAZCHEM

        hazard_level: int | None = None
        hl = c.get("hazard_level", "")
        if hl:
            if hl in ("1", "2", "3", "4"):
                hazard_level = int(hl)
            else:
                add("hazard_level", f"expected 1, 2, 3, 4 or empty, got {hl!r}")

        parameter = c.get("parameter", "")
        param_ok = True
        if parameter and not (parameter in NON_GAS_PARAMETERS or parameter in known_gases):
            param_ok = False
            if parameter.startswith("gas."):
                add(
                    "parameter",
                    f"unknown gas {parameter!r}; known: {', '.join(sorted(known_gases))}",
                )
            else:
                add(
                    "parameter",
                    f"unknown parameter {parameter!r}; expected gas.<formula> or one of "
                    + ", ".join(sorted(NON_GAS_PARAMETERS)),
                )
        unit_s = c.get("unit", "")
        unit = unit_s
        if param_ok and parameter and unit_s == "" and "" not in units_for(parameter):
            add(
                "unit",
                f"required for {parameter}; expected one of {', '.join(units_for(parameter))}",
            )
        elif parameter:
            try:
                unit = canonical_unit(unit_s)
            except UnitError as exc:
                add("unit", str(exc))
                param_ok = False
            if param_ok and parameter:
                allowed = units_for(parameter)
                resolved = unit
                if unit == "%" and parameter.startswith("gas."):
                    resolved = "%vol"
                elif unit == "%" and parameter == "humidity":
                    resolved = "%RH"
                if resolved not in allowed:
                    add(
                        "unit",
                        f"{unit_s!r} does not fit {parameter}; expected one of "
                        + ", ".join(repr(u) for u in allowed),
                    )
                unit = resolved

        rl, rh = num("range_low"), num("range_high")
        if rl is not None and rh is not None and not rl < rh:
            add("range_high", f"measuring range is empty: range_low {rl:g} >= range_high {rh:g}")
        limits = {k: num(k) for k in LIMITS}
        set_limits = [(k, v) for k, v in limits.items() if v is not None]
        for (ka, va), (kb, vb) in itertools.pairwise(set_limits):
            if va > vb:
                add(
                    kb,
                    f"limits out of order: {ka.upper()} {va:g} > {kb.upper()} {vb:g} "
                    "(expected LL <= L <= H <= HH)",
                )
        for k, v in set_limits:
            if rl is not None and v < rl:
                add(k, f"{k.upper()} {v:g} is below the measuring range [{rl:g}, {_g(rh, '+inf')}]")
            if rh is not None and v > rh:
                add(k, f"{k.upper()} {v:g} is above the measuring range [{_g(rl, '-inf')}, {rh:g}]")

        quota = limits["h"]
        if (
            parameter == "occupancy"
            and quota is not None
            and not (quota >= 1 and quota.is_integer())
        ):
            # For occupancy points `h` is the approved head-count (定员), a whole number.
            add("h", f"head-count quota must be a whole number of persons >= 1, got {quota:g}")

        interval = num("expected_interval_s")
        if interval is None:
            interval = DEFAULT_EXPECTED_INTERVAL_S
        elif not interval > 0:
            add("expected_interval_s", f"expected seconds > 0, got {c['expected_interval_s']!r}")
        elif interval > 7 * 24 * 3600:
            add(
                "expected_interval_s",
                f"{interval:g} s is more than a week; expected a reporting interval in seconds",
            )

        lat, lon = num("lat"), num("lon")
        if lat is not None and not -90 <= lat <= 90:
            add("lat", f"latitude {lat:g} is outside [-90, 90]")
        if lon is not None and not -180 <= lon <= 180:
            add("lon", f"longitude {lon:g} is outside [-180, 180]")
        if (c.get("lat", "") == "") != (c.get("lon", "") == ""):
            add("lon" if c.get("lon", "") == "" else "lat", "lat and lon must be given together")

        if ent and tag:
            key = (ent, tag)
            if key in first_line:
                add(
                    "tag",
                    f"duplicate tag {tag!r} in enterprise {ent!r} "
                    f"(first on line {first_line[key]})",
                )
            else:
                first_line[key] = row.line

        if len(problems) != bad:
            continue
        attrs = {k: v for k, v in c.items() if k not in COLUMNS}
        points.append(
            Point(
                enterprise_code=ent,
                enterprise_name=c.get("enterprise_name", ""),
                industry=industry,
                district=c.get("district", ""),
                hazard_code=c.get("hazard_code", ""),
                hazard_level=hazard_level,
                zone=c.get("zone", ""),
                gateway_code=c.get("gateway_code", ""),
                tag=tag,
                parameter=parameter,
                unit=unit,
                range_low=rl,
                range_high=rh,
                ll=limits["ll"],
                l=limits["l"],
                h=limits["h"],
                hh=limits["hh"],
                expected_interval_s=interval,
                lat=lat,
                lon=lon,
                attrs=MappingProxyType(attrs),
            )
        )
    return points


def _g(v: float | None, unset: str) -> str:
    return unset if v is None else f"{v:g}"


def summary(registry: Registry) -> dict[str, dict[str, int]]:
    """Points per enterprise and parameter (what `hazardwatch registry check` prints)."""
    out: dict[str, dict[str, int]] = {}
    for p in registry:
        per = out.setdefault(p.enterprise_code, {})
        per[p.parameter] = per.get(p.parameter, 0) + 1
    return out
