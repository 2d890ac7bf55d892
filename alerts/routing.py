"""Who is told of what: the routing file (a strict YAML model) and the pure `route()` that
turns a subject (enterprise, installation, district), a colour and an escalation tier into
recipients. The service and `hazardwatch route test` call the same function.

The colour ladder (DOMAIN.md §4 defaults, configurable): 蓝 -> 操作负责人 + the enterprise
duty group; 黄 -> + 技术负责人; 橙 -> + 主要负责人 + district/park duty officer; 红 -> + the
city duty officer. Escalation tier n routes as the colour n steps up the ladder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ingest.model import Registry
from rules.model import Colour

Role = Literal["operator", "technical", "main", "enterprise_duty", "district", "park", "city"]

ROLE_ZH = {
    "operator": "操作负责人",
    "technical": "技术负责人",
    "main": "主要负责人",
    "enterprise_duty": "企业值班群",
    "district": "区县值班员",
    "park": "园区值班员",
    "city": "市应急局值班员",
    "operators": "系统运维",
}

COLOURS = (Colour.BLUE, Colour.YELLOW, Colour.ORANGE, Colour.RED)
PERSON_CHANNELS = frozenset({"aliyun_sms", "tencent_sms", "wechat", "webhook"})


class RoutingError(Exception):
    """The routing file is invalid; the message lists every problem, one per line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contact(_Strict):
    name: str = Field(min_length=1)
    phone: str | None = None  # +86... (SMS)
    openid: str | None = None  # WeChat official account (template messages)
    channels: list[str] | None = None  # this person's own preference (default: channels.person)

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        digits = v[1:] if v.startswith("+") else v
        if not digits.isdigit() or not 6 <= len(digits) <= 15:
            raise ValueError("must be a phone number like +8613800000000")
        return v if v.startswith("+") else "+86" + v


class Installation(_Strict):
    name: str = ""
    main: Contact | None = None
    technical: Contact | None = None
    operator: Contact | None = None


class Enterprise(_Strict):
    name: str = ""
    district: str | None = None  # overrides the registry's district
    park: str | None = None  # key of an office with kind: park
    duty_robot: str | None = None  # WeCom robot NAME; its key lives in settings
    main: Contact | None = None  # enterprise-level defaults for installations without their own
    technical: Contact | None = None
    operator: Contact | None = None
    installations: dict[str, Installation] = Field(default_factory=dict)


class Office(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["district", "park", "city"] = "district"
    duty_officers: list[Contact] = Field(default_factory=list)
    duty_robot: str | None = None


class Ladder(_Strict):
    blue: list[Role] = ["operator", "enterprise_duty"]
    yellow: list[Role] = ["operator", "enterprise_duty", "technical"]
    orange: list[Role] = ["operator", "enterprise_duty", "technical", "main", "district", "park"]
    red: list[Role] = [
        "operator",
        "enterprise_duty",
        "technical",
        "main",
        "district",
        "park",
        "city",
    ]

    def roles(self, colour: Colour) -> list[str]:
        return list(getattr(self, str(colour)))


class Escalation(_Strict):
    # Not acknowledged within: 10 min for 橙/红, 30 min for 蓝/黄 (DOMAIN.md §4 defaults).
    ack_timeout_s: dict[Colour, float] = Field(
        default_factory=lambda: {
            Colour.BLUE: 1800.0,
            Colour.YELLOW: 1800.0,
            Colour.ORANGE: 600.0,
            Colour.RED: 600.0,
        }
    )
    reminder_interval_s: float = Field(default=1800.0, ge=0)  # 0 = no reminders
    disposition_overdue_s: float = Field(default=86400.0, gt=0)

    @field_validator("ack_timeout_s")
    @classmethod
    def _all_colours(cls, v: dict[Colour, float]) -> dict[Colour, float]:
        missing = [str(c) for c in COLOURS if c not in v]
        if missing:
            raise ValueError(f"needs a timeout for every colour; missing {', '.join(missing)}")
        if any(t <= 0 for t in v.values()):
            raise ValueError("timeouts must be > 0 seconds")
        return v


class Channels(_Strict):
    person: list[str] = ["aliyun_sms"]  # how people are reached (phone/openid)
    robot: list[str] = ["wecom"]  # how duty groups are reached (robot name)
    platform: bool = True  # every transition also goes to the bureau's platform
    fallbacks: dict[str, str] = Field(default_factory=dict)  # channel -> fallback channel
    fallback_after_s: float = Field(default=600.0, ge=0)

    @model_validator(mode="after")
    def _no_self_fallback(self) -> Channels:
        for a, b in self.fallbacks.items():
            if a == b:
                raise ValueError(f"fallbacks: {a} cannot fall back to itself")
        return self


class AlarmColours(_Strict):
    """The colour an alarm is routed at before any warning exists (configurable defaults:
    first-level/H/L -> 蓝, second-level -> 橙; by_kind wins over by_level)."""

    by_level: dict[str, Colour] = Field(
        default_factory=lambda: {
            "L1": Colour.BLUE,
            "H": Colour.BLUE,
            "L": Colour.BLUE,
            "L2": Colour.ORANGE,
            "HH": Colour.ORANGE,
            "LL": Colour.ORANGE,
        }
    )
    by_kind: dict[str, Colour] = Field(
        default_factory=lambda: {"interlock": Colour.ORANGE, "gateway": Colour.BLUE}
    )
    default: Colour = Colour.BLUE

    def colour_of(self, kind: str, level: str | None) -> Colour:
        if kind in self.by_kind:
            return self.by_kind[kind]
        if level is not None and level in self.by_level:
            return self.by_level[level]
        return self.default


class Inhibit(_Strict):
    gateway_offline_hold_s: float = Field(default=60.0, ge=0)
    fault_process_hold_s: float = Field(default=0.0, ge=0)


class Lifecycle(_Strict):
    latch_rules: list[str] = Field(default_factory=list)  # fnmatch globs on rule names
    latch_kinds: list[str] = Field(default_factory=list)
    backfill_hold_s: float = Field(default=60.0, ge=0)  # wait for the clear of a late alarm
    # After a close of a present alarm, how long the source may take to reset it before the
    # alerts stage re-fires it itself (the source only resets latched alarms).
    reset_grace_s: float = Field(default=5.0, ge=0)
    max_shelve_s: float = Field(default=7 * 86400.0, gt=0)


class Delivery(_Strict):
    base_backoff_s: float = Field(default=5.0, gt=0)
    max_backoff_s: float = Field(default=300.0, gt=0)
    dead_after_s: float = Field(default=6 * 3600.0, gt=0)
    batch: int = Field(default=200, ge=1)


class RoutingConfig(_Strict):
    version: Literal[1] = 1
    city: Office | None = None
    districts: dict[str, Office] = Field(default_factory=dict)  # district AND park offices
    enterprises: dict[str, Enterprise] = Field(default_factory=dict)
    ladder: Ladder = Ladder()
    escalation: Escalation = Escalation()
    channels: Channels = Channels()
    alarm_colours: AlarmColours = AlarmColours()
    inhibit: Inhibit = Inhibit()
    lifecycle: Lifecycle = Lifecycle()
    delivery: Delivery = Delivery()
    operators: list[Contact] = Field(default_factory=list)  # told of dead letters

    @model_validator(mode="after")
    def _references(self) -> RoutingConfig:
        problems = []
        for code, e in self.enterprises.items():
            if e.park is not None:
                office = self.districts.get(e.park)
                if office is None:
                    problems.append(f"enterprises.{code}.park: no office {e.park!r} in districts")
            if e.district is not None and e.district not in self.districts:
                problems.append(
                    f"enterprises.{code}.district: no office {e.district!r} in districts"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(frozen=True, slots=True)
class Recipient:
    """One address on one channel, and why it was chosen."""

    role: str
    name: str
    channel: str
    address: str  # phone, openid, robot name, or "platform"

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel, self.address)


@dataclass(frozen=True, slots=True)
class RouteSubject:
    enterprise_code: str
    hazard_code: str
    district: str


def subject_for(
    cfg: RoutingConfig, registry: Registry, enterprise_code: str, hazard_code: str = ""
) -> RouteSubject:
    """The routing subject of an enterprise/installation: its district is the routing file's
    override, else the registry's (the service and `route test` both use this)."""
    ent = cfg.enterprises.get(enterprise_code)
    district = ent.district if ent is not None and ent.district else ""
    if not district:
        pts = registry.enterprise(enterprise_code)
        district = pts[0].district if pts else ""
    return RouteSubject(enterprise_code, hazard_code, district)


def colour_at_tier(colour: Colour, tier: int) -> Colour:
    """The ladder step an escalation tier routes at (red is the top)."""
    return COLOURS[min(colour.rank - 1 + max(tier, 0), len(COLOURS) - 1)]


def max_tier(colour: Colour) -> int:
    return len(COLOURS) - colour.rank


def _contacts_for(
    cfg: RoutingConfig, s: RouteSubject, role: str
) -> tuple[list[Contact], list[str]]:
    """(people, robot names) holding `role` for the subject."""
    ent = cfg.enterprises.get(s.enterprise_code)
    if role in ("operator", "technical", "main"):
        if ent is None:
            return [], []
        inst = ent.installations.get(s.hazard_code) if s.hazard_code else None
        c = (getattr(inst, role) if inst is not None else None) or getattr(ent, role)
        return ([c] if c else []), []
    if role == "enterprise_duty":
        return [], ([ent.duty_robot] if ent and ent.duty_robot else [])
    if role == "district":
        code = (ent.district if ent and ent.district else None) or s.district
        office = cfg.districts.get(code)
    elif role == "park":
        office = cfg.districts.get(ent.park) if ent and ent.park else None
    elif role == "city":
        office = cfg.city
    else:  # pragma: no cover - Role is a closed Literal
        office = None
    if office is None:
        return [], []
    return list(office.duty_officers), ([office.duty_robot] if office.duty_robot else [])


def _recipients(
    cfg: RoutingConfig, role: str, people: list[Contact], robots: list[str]
) -> list[Recipient]:
    out = []
    for c in people:
        for ch in c.channels if c.channels is not None else cfg.channels.person:
            if ch == "wechat":
                if c.openid:
                    out.append(Recipient(role, c.name, ch, c.openid))
            elif c.phone:
                out.append(Recipient(role, c.name, ch, c.phone))
    for robot in robots:
        for ch in cfg.channels.robot:
            out.append(Recipient(role, robot, ch, robot))
    return out


def route(
    cfg: RoutingConfig, subject: RouteSubject, colour: Colour, tier: int = 0
) -> list[Recipient]:
    """Everyone to tell about `subject` at `colour` after `tier` escalations (platform not
    included), in ladder order, each (channel, address) once."""
    seen: set[tuple[str, str]] = set()
    out: list[Recipient] = []
    for role in cfg.ladder.roles(colour_at_tier(colour, tier)):
        people, robots = _contacts_for(cfg, subject, role)
        for r in _recipients(cfg, role, people, robots):
            if r.key not in seen:
                seen.add(r.key)
                out.append(r)
    return out


def role_recipients(cfg: RoutingConfig, subject: RouteSubject, roles: list[str]) -> list[Recipient]:
    """Recipients holding the given roles only (filings notify the district, not a ladder)."""
    seen: set[tuple[str, str]] = set()
    out: list[Recipient] = []
    for role in roles:
        people, robots = _contacts_for(cfg, subject, role)
        for r in _recipients(cfg, role, people, robots):
            if r.key not in seen:
                seen.add(r.key)
                out.append(r)
    return out


def missing_roles(
    cfg: RoutingConfig, subject: RouteSubject, colour: Colour, tier: int = 0
) -> list[str]:
    """Roles of the ladder step that nobody holds for this subject (shown by route test)."""
    return [
        role
        for role in cfg.ladder.roles(colour_at_tier(colour, tier))
        if _contacts_for(cfg, subject, role) == ([], [])
    ]


def platform_recipient() -> Recipient:
    return Recipient("platform", "安全风险隐患管理平台", "platform", "platform")


def operator_recipients(cfg: RoutingConfig) -> list[Recipient]:
    return _recipients(cfg, "operators", list(cfg.operators), [])


def _format_validation(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the routing file"]
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = err.get("input")
        got_s = "" if isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"  {loc}: {msg}{got_s}")
    return "\n".join(lines)


def parse_routing(data: Any, source: str = "<routing>") -> RoutingConfig:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise RoutingError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        return RoutingConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise RoutingError(_format_validation(exc, source)) from None


def load_routing(path: Path | str) -> RoutingConfig:
    """Read and validate a routing YAML file; every problem is reported at once."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RoutingError(f"routing file not found: {p}") from None
    except OSError as exc:
        raise RoutingError(f"{p}: cannot read the routing file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RoutingError(f"{p}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_routing(data, str(p))
