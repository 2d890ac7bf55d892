"""The HTTP API over `AlertService` and `AlertStore` (FastAPI, with its OpenAPI spec): list and
read alarms and warnings, acknowledge, dispose, shelve, file maintenance and start-up/shutdown,
export the journal; and the small acknowledge/dispose page reached from SMS and WeCom links.

Every action goes through the service, which journals it with the caller as the actor. A
caller only ever sees its own scope: something outside it answers exactly like something that
does not exist (404), so an enterprise cannot even learn that another's alarm exists.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.auth import LinkError, LinkSigner, Principal, Role, TokenAuth
from alerts.channels.base import REDACTED
from alerts.journal import canonical
from alerts.lifecycle import AlarmRecord, Phase, WarningRecord
from alerts.model import Disposition, FilingKind
from alerts.service import AlertService, InvalidAction, NotFound
from alerts.store import AlertStore
from alerts.suppression import Filing, Shelf
from ingest.model import iso_ms
from rules.model import Colour

log = logging.getLogger("alerts.api")

API = "/api/v1"
MAX_TEXT = 2000  # notes and reasons: a paragraph, not a document

DISPOSITION_ZH = {
    Disposition.REAL_ALARM_HANDLED: "真实报警，已处置",
    Disposition.PROCESS_FLUCTUATION: "工艺波动",
    Disposition.INSTRUMENT_FAULT: "仪表故障 / 误报",
    Disposition.MAINTENANCE_OR_SHUTDOWN: "检修或停车（已备案）",
    Disposition.COMMISSIONING: "调试",
    Disposition.OTHER: "其他（请在说明中写明）",
}
PHASE_ZH = {
    Phase.FIRING: "报警中，未确认",
    Phase.ACKNOWLEDGED: "已确认",
    Phase.CLEARED: "已消警，待处置",
    Phase.CLOSED: "已处置，已关闭",
}

Record = AlarmRecord | WarningRecord


# -- request and response models ------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AckIn(_In):
    note: str = Field(default="", max_length=MAX_TEXT)


class DisposeIn(_In):
    code: Disposition
    note: str = Field(default="", max_length=MAX_TEXT)
    person: str = Field(
        default="",
        max_length=100,
        description="Who handled it on site, if not the caller (recorded with the caller).",
    )

    @model_validator(mode="after")
    def _other_needs_note(self) -> DisposeIn:
        if self.code is Disposition.OTHER and not self.note.strip():
            raise ValueError("a disposition of 'other' needs a note saying what happened")
        return self


class ShelveIn(_In):
    reason: str = Field(min_length=1, max_length=MAX_TEXT)
    until: datetime | None = Field(default=None, description="Expiry (ISO 8601 with offset).")
    duration_s: float | None = Field(default=None, gt=0, le=366 * 86400.0)

    @model_validator(mode="after")
    def _one_expiry(self) -> ShelveIn:
        if (self.until is None) == (self.duration_s is None):
            raise ValueError("give exactly one of `until` and `duration_s`")
        if not self.reason.strip():
            raise ValueError("reason must not be blank")
        return self


class FilingIn(_In):
    kind: FilingKind
    enterprise_code: str = Field(min_length=1, max_length=64)
    hazard_code: str = Field(default="", max_length=64)
    tag: str = Field(default="", max_length=64)
    start: datetime | None = Field(default=None, description="Default: now.")
    planned_end: datetime | None = Field(default=None, description="Required unless decommission.")
    interlock_bypassed: bool = False
    note: str = Field(default="", max_length=MAX_TEXT)


class EndFilingIn(_In):
    note: str = Field(default="", max_length=MAX_TEXT)


class LinkAckIn(_In):
    person: str = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=MAX_TEXT)


class LinkDisposeIn(DisposeIn):
    person: str = Field(min_length=1, max_length=100)


class _Out(BaseModel):
    # Records carry more fields than are listed; they are passed through as they are.
    model_config = ConfigDict(extra="allow")


class SubjectOut(_Out):
    subject_kind: Literal["alarm", "warning"]
    subject_id: str
    enterprise_code: str
    district: str
    hazard_code: str
    colour: Colour
    phase: Phase
    active: bool
    raised_ms: int
    raised: str
    updated: str
    acked: str | None
    closed: str | None
    disposition: Disposition | None
    suppressed: str


class ActionOut(BaseModel):
    ts: str
    action: str
    user: str
    data: dict[str, Any]


class SubjectDetailOut(SubjectOut):
    actions: list[ActionOut]


class PageOut(BaseModel):
    items: list[SubjectOut]
    total: int
    limit: int
    offset: int


class ShelfOut(_Out):
    shelf_id: str
    subject_id: str
    enterprise_code: str
    reason: str
    shelved_by: str
    expires: str
    ended: str | None


class FilingOut(_Out):
    filing_id: str
    kind: FilingKind
    enterprise_code: str
    hazard_code: str
    tag: str
    start: str
    planned_end: str | None
    actual_end: str | None
    interlock_bypassed: bool
    filed_by: str


class MeOut(BaseModel):
    name: str
    role: Role
    enterprises: list[str]
    districts: list[str]


class HealthOut(BaseModel):
    status: Literal["ok"]
    journal_records: int


class VerifyOut(BaseModel):
    ok: bool
    records: int
    first_bad_seq: int | None
    reason: str


class ChoiceOut(BaseModel):
    code: str
    label: str


class LinkViewOut(BaseModel):
    subject_kind: Literal["alarm", "warning"]
    subject_id: str
    enterprise: str
    title: str
    colour: Colour
    colour_zh: str
    phase: Phase
    phase_zh: str
    tag: str
    level: str | None
    value: float | None
    threshold: float | None
    unit: str
    raised: str
    acked_by: str
    closed_by: str
    disposition: str | None
    dispositions: list[ChoiceOut]
    link_expires: str


class ErrorOut(BaseModel):
    detail: str


def _err(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorOut} for c in codes}


# -- conversions ----------------------------------------------------------------------------


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_ms(ms)


def _ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # a time without offset is read as UTC
    return int(dt.timestamp() * 1000)


def subject_out(rec: Record) -> dict[str, Any]:
    d = rec.to_dict()
    d.update(
        subject_kind="alarm" if isinstance(rec, AlarmRecord) else "warning",
        subject_id=rec.subject_id,
        active=rec.active,
        raised=iso_ms(rec.raised_ms),
        updated=iso_ms(rec.updated_ms),
        acked=_iso(rec.acked_ms),
        closed=_iso(rec.closed_ms),
    )
    return d


def shelf_out(s: Shelf) -> dict[str, Any]:
    d = s.to_dict()
    d.update(expires=iso_ms(s.expires_ms), ended=_iso(s.ended_ms))
    return d


def filing_out(f: Filing) -> dict[str, Any]:
    d = f.to_dict()
    d.update(
        start=iso_ms(f.start_ms),
        planned_end=_iso(f.planned_end_ms),
        actual_end=_iso(f.actual_end_ms),
    )
    return d


# -- logging ---------------------------------------------------------------------------------

_LINK_TOKEN = re.compile(r"([?&]t=)[^&\s\"']+")


class LinkTokenFilter(logging.Filter):
    """Access logs would keep every link token (`/a/<id>?t=...`) for as long as the logs live;
    the token is cut from the line before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "t=" in msg:
            record.msg = _LINK_TOKEN.sub(r"\1" + REDACTED, msg)
            record.args = None
        return True


def _install_log_filter() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "alerts.api"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, LinkTokenFilter) for f in logger.filters):
            logger.addFilter(LinkTokenFilter())


# -- parameters shared by the routes (module level: FastAPI resolves annotations here) -------

_bearer = HTTPBearer(auto_error=False, description="API token (see alerts/auth.py)")


def _principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    p = request.app.state.auth.authenticate(creds.credentials if creds else None)
    if p is None:
        raise HTTPException(
            401, "a valid API token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    return p


Caller = Annotated[Principal, Depends(_principal)]
SubjectId = Annotated[str, Path(min_length=1, max_length=128)]
ShortId = Annotated[str, Path(min_length=1, max_length=64)]
Multi = Annotated[list[str] | None, Query(max_length=50)]
Since = Annotated[datetime | None, Query(description="Raised at or after (ISO 8601).")]
Until = Annotated[datetime | None, Query(description="Raised before (ISO 8601).")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Token = Annotated[str, Query(min_length=1, max_length=512, description="Link token.")]
Phases = Annotated[list[Phase] | None, Query(max_length=4)]
Colours = Annotated[list[Colour] | None, Query(max_length=4)]
Code64 = Annotated[str | None, Query(max_length=64)]


# -- the app ------------------------------------------------------------------------------


def create_app(
    service: AlertService,
    store: AlertStore,
    auth: TokenAuth,
    *,
    links: LinkSigner | None = None,
    clock_ms: Callable[[], int] | None = None,
) -> FastAPI:
    """The API app. `links` verifies the tokens of the acknowledge/dispose links (without it
    the link page answers 404); `clock_ms` gives "now" in epoch ms (tests pass a fixed one)."""
    now_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
    _install_log_filter()
    app = FastAPI(
        # A body that is not JSON at all is refused by FastAPI itself with 400.
        responses={400: {"model": ErrorOut, "description": "The body is not valid JSON."}},
        title="hazardwatch alerts API",
        version="1",
        description=(
            "Alarms and coloured warnings of hazardous-chemical and fireworks sites: list, "
            "acknowledge, dispose (处置), shelve, file maintenance and start-up/shutdown, "
            "export the audit journal. Bearer-token auth; an enterprise token sees only its "
            "own enterprise, a duty token its districts."
        ),
    )
    app.state.auth = auth

    # -- cross-cutting ----------------------------------------------------------------------

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        resp = await call_next(request)
        resp.headers.setdefault("Cache-Control", "no-store")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        # The link page carries its token in the URL: never pass it on in a Referer.
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(InvalidAction)
    async def _invalid(request: Request, exc: InvalidAction) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    def visible(p: Principal, rec: Record | None, what: str, sid: str) -> Record:
        # Out of scope and absent answer the same, so existence does not leak.
        if rec is None or not p.can_access(rec.enterprise_code, rec.district):
            raise NotFound(f"no {what} {sid!r}")
        return rec

    def district_of(enterprise_code: str) -> str | None:
        ent = service.routing.enterprises.get(enterprise_code)
        if ent is not None and ent.district:
            return ent.district
        points = service.registry.enterprise(enterprise_code)
        if points:
            return points[0].district
        return "" if ent is not None else None

    def enterprise_in_scope(p: Principal, code: str) -> None:
        district = district_of(code)
        if district is None or not p.can_access(code, district):
            raise NotFound(f"no enterprise {code!r}")

    def actor(p: Principal, person: str = "") -> str:
        person = person.strip()
        if person and person != p.name:
            return f"{person} (recorded by {p.name})"
        return p.name

    def scoped(p: Principal, requested: list[str] | None, key: str) -> list[str] | None:
        allowed = p.scope_filter().get(key)
        if allowed is None:
            return requested
        return allowed if requested is None else [v for v in requested if v in allowed]

    def detail(rec: Record) -> dict[str, Any]:
        out = subject_out(rec)
        out["actions"] = [
            {"ts": iso_ms(a.ts_ms), "action": a.action, "user": a.user, "data": a.data}
            for a in store.list_actions(subject_id=rec.subject_id, limit=500)
        ]
        return out

    # -- meta ----------------------------------------------------------------------------

    @app.get(f"{API}/health", response_model=HealthOut, tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness, and how far the journal has grown (no auth)."""
        return {"status": "ok", "journal_records": store.journal_head()[0]}

    @app.get(f"{API}/me", response_model=MeOut, responses=_err(401), tags=["meta"])
    def me(p: Caller) -> dict[str, Any]:
        """Who the token belongs to and what it may see."""
        return {
            "name": p.name,
            "role": p.role,
            "enterprises": sorted(p.enterprises),
            "districts": sorted(p.districts),
        }

    # -- alarms and warnings ---------------------------------------------------------------

    @app.get(f"{API}/alarms", response_model=PageOut, responses=_err(401), tags=["alarms"])
    def list_alarms(
        p: Caller,
        enterprise: Multi = None,
        district: Multi = None,
        state: Phases = None,
        colour: Colours = None,
        kind: Multi = None,
        hazard_code: Code64 = None,
        tag: Code64 = None,
        since: Since = None,
        until: Until = None,
        open_only: bool = False,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Alarms in the caller's scope matching every filter, newest first."""
        filters: dict[str, Any] = dict(
            enterprise=scoped(p, enterprise, "enterprise"),
            district=scoped(p, district, "district"),
            state=[str(s) for s in state] if state else None,
            colour=[str(c) for c in colour] if colour else None,
            kind=kind,
            hazard_code=hazard_code,
            tag=tag,
            since_ms=_ms(since) if since else None,
            until_ms=_ms(until) if until else None,
            open_only=open_only,
        )
        items = store.list_alarms(limit=limit, offset=offset, **filters)
        total = store.count_alarms(**filters)
        return {
            "items": [subject_out(r) for r in items],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @app.get(f"{API}/warnings", response_model=PageOut, responses=_err(401), tags=["warnings"])
    def list_warnings(
        p: Caller,
        enterprise: Multi = None,
        district: Multi = None,
        state: Phases = None,
        colour: Colours = None,
        hazard_code: Code64 = None,
        since: Since = None,
        until: Until = None,
        open_only: bool = False,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Coloured warnings (红橙黄蓝) in the caller's scope, newest first."""
        filters: dict[str, Any] = dict(
            enterprise=scoped(p, enterprise, "enterprise"),
            district=scoped(p, district, "district"),
            state=[str(s) for s in state] if state else None,
            colour=[str(c) for c in colour] if colour else None,
            hazard_code=hazard_code,
            since_ms=_ms(since) if since else None,
            until_ms=_ms(until) if until else None,
            open_only=open_only,
        )
        items = store.list_warnings(limit=limit, offset=offset, **filters)
        total = store.count_warnings(**filters)
        return {
            "items": [subject_out(r) for r in items],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @app.get(
        f"{API}/alarms/{{alarm_id}}",
        response_model=SubjectDetailOut,
        responses=_err(401, 404),
        tags=["alarms"],
    )
    def get_alarm(p: Caller, alarm_id: SubjectId) -> dict[str, Any]:
        """One alarm with its history of human actions."""
        return detail(visible(p, store.get_alarm(alarm_id), "alarm", alarm_id))

    @app.get(
        f"{API}/warnings/{{warning_id}}",
        response_model=SubjectDetailOut,
        responses=_err(401, 404),
        tags=["warnings"],
    )
    def get_warning(p: Caller, warning_id: SubjectId) -> dict[str, Any]:
        """One warning with its history of human actions."""
        return detail(visible(p, store.get_warning(warning_id), "warning", warning_id))

    # -- actions on an alarm or a warning --------------------------------------------------

    def subject(p: Principal, sid: str) -> Record:
        return visible(p, store.get_subject(sid), "alarm or warning", sid)

    @app.post(
        f"{API}/subjects/{{subject_id}}/acknowledge",
        response_model=SubjectOut,
        responses=_err(401, 404, 409),
        tags=["actions"],
    )
    def acknowledge(p: Caller, subject_id: SubjectId, body: AckIn) -> dict[str, Any]:
        """Acknowledge (确认) an alarm or warning: stops its escalation."""
        subject(p, subject_id)
        rec = service.acknowledge(subject_id, actor(p), now_ms(), note=body.note)
        return subject_out(rec)

    @app.post(
        f"{API}/subjects/{{subject_id}}/dispose",
        response_model=SubjectOut,
        responses=_err(401, 404, 409),
        tags=["actions"],
    )
    def dispose(p: Caller, subject_id: SubjectId, body: DisposeIn) -> dict[str, Any]:
        """File the disposition (处置) and close; an alarm still present fires again."""
        subject(p, subject_id)
        rec = service.dispose(subject_id, actor(p, body.person), body.code, body.note, now_ms())
        return subject_out(rec)

    @app.post(
        f"{API}/alarms/{{alarm_id}}/shelve",
        response_model=ShelfOut,
        status_code=201,
        responses=_err(401, 403, 404, 409),
        tags=["actions"],
    )
    def shelve(p: Caller, alarm_id: SubjectId, body: ShelveIn) -> dict[str, Any]:
        """Shelve an alarm's rule on its point until an expiry, with a reason. Shelving hides
        an alarm from the bureau, so only duty officers and admins may do it (ISA-18.2:
        shelving is an authorised act)."""
        visible(p, store.get_alarm(alarm_id), "alarm", alarm_id)
        if p.role is Role.ENTERPRISE:
            raise HTTPException(403, "shelving needs a duty officer or an admin token")
        now = now_ms()
        until = _ms(body.until) if body.until else now + int((body.duration_s or 0) * 1000)
        return shelf_out(service.shelve(alarm_id, actor(p), body.reason, until, now))

    @app.get(f"{API}/shelves", response_model=list[ShelfOut], responses=_err(401), tags=["actions"])
    def list_shelves(p: Caller, open_only: bool = True) -> list[dict[str, Any]]:
        """Shelves in the caller's scope."""
        return [
            shelf_out(s) for s in store.list_shelves(open_only=open_only) if _shelf_visible(p, s)
        ]

    def _shelf_visible(p: Principal, s: Shelf) -> bool:
        district = district_of(s.enterprise_code)
        return p.can_access(s.enterprise_code, district or "")

    @app.post(
        f"{API}/shelves/{{shelf_id}}/end",
        response_model=ShelfOut,
        responses=_err(401, 403, 404),
        tags=["actions"],
    )
    def unshelve(p: Caller, shelf_id: ShortId) -> dict[str, Any]:
        """End a shelf before its expiry."""
        s = store.get_shelf(shelf_id)
        if s is None or not _shelf_visible(p, s) or s.ended_ms is not None:
            raise NotFound(f"no open shelf {shelf_id!r}")
        if p.role is Role.ENTERPRISE:
            raise HTTPException(403, "ending a shelf needs a duty officer or an admin token")
        return shelf_out(service.unshelve(shelf_id, actor(p), now_ms()))

    # -- filings ---------------------------------------------------------------------------

    @app.get(
        f"{API}/filings", response_model=list[FilingOut], responses=_err(401), tags=["filings"]
    )
    def list_filings(
        p: Caller,
        enterprise: Multi = None,
        open_only: bool = False,
        kind: FilingKind | None = None,
    ) -> list[dict[str, Any]]:
        """Maintenance, start-up/shutdown and decommission filings (备案) in scope."""
        ents = scoped(p, enterprise, "enterprise")
        out = []
        for f in store.list_filings(
            enterprise=ents, open_only=open_only, kind=None if kind is None else str(kind)
        ):
            d = district_of(f.enterprise_code)
            if p.can_access(f.enterprise_code, d or ""):
                out.append(filing_out(f))
        return out

    @app.post(
        f"{API}/filings",
        response_model=FilingOut,
        status_code=201,
        responses=_err(401, 404, 409),
        tags=["filings"],
    )
    def file(p: Caller, body: FilingIn) -> dict[str, Any]:
        """File maintenance (大检修), start-up/shutdown (开停车, say whether interlocks are
        bypassed) or decommissioning (停用) for an enterprise, installation or point."""
        enterprise_in_scope(p, body.enterprise_code)
        f = service.file(
            body.kind,
            body.enterprise_code,
            actor(p),
            now_ms(),
            hazard_code=body.hazard_code,
            tag=body.tag,
            start_ms=_ms(body.start) if body.start else None,
            planned_end_ms=_ms(body.planned_end) if body.planned_end else None,
            interlock_bypassed=body.interlock_bypassed,
            note=body.note,
        )
        return filing_out(f)

    @app.post(
        f"{API}/filings/{{filing_id}}/end",
        response_model=FilingOut,
        responses=_err(401, 404, 409),
        tags=["filings"],
    )
    def end_filing(
        p: Caller,
        filing_id: ShortId,
        body: EndFilingIn,
    ) -> dict[str, Any]:
        """Record the actual end of a filing; pushes resume."""
        f = store.get_filing(filing_id)
        if f is None or not p.can_access(f.enterprise_code, district_of(f.enterprise_code) or ""):
            raise NotFound(f"no filing {filing_id!r}")
        return filing_out(service.end_filing(filing_id, actor(p), now_ms(), note=body.note))

    # -- journal ---------------------------------------------------------------------------

    @app.get(
        f"{API}/journal",
        responses={
            200: {
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                "description": "One JSON record per line, with seq, prev_hash and hash.",
            },
            **_err(401),
        },
        response_class=StreamingResponse,
        tags=["journal"],
    )
    def export_journal(
        p: Caller,
        since: Since = None,
        until: Until = None,
        subject_id: Annotated[str | None, Query(max_length=128)] = None,
    ) -> StreamingResponse:
        """Export the audit journal for an inspection (JSON lines with their hashes, so the
        chain can be re-verified with `hazardwatch audit verify`). Admins get every record;
        others the records of alarms, warnings and filings in their scope. The export is
        itself journaled."""
        service.journal.append(
            "action.export_journal",
            subject_id or "",
            {
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
            },
            now_ms(),
            actor=p.name,
        )
        entries = service.journal.entries(
            _ms(since) if since else None, _ms(until) if until else None, subject_id
        )
        cache: dict[str, bool] = {}

        def in_scope(sid: str) -> bool:
            if p.role is Role.ADMIN:
                return True
            if sid not in cache:
                rec = store.get_subject(sid)
                if rec is not None:
                    cache[sid] = p.can_access(rec.enterprise_code, rec.district)
                else:
                    f = store.get_filing(sid)
                    cache[sid] = f is not None and p.can_access(
                        f.enterprise_code, district_of(f.enterprise_code) or ""
                    )
            return cache[sid]

        def lines() -> Iterator[bytes]:
            for e in entries:
                if in_scope(e.subject_id):
                    yield (canonical(e.to_dict()) + "\n").encode("utf-8")

        return StreamingResponse(
            lines(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="hazardwatch-journal.jsonl"'},
        )

    @app.get(
        f"{API}/journal/verify",
        response_model=VerifyOut,
        responses=_err(401, 403),
        tags=["journal"],
    )
    def verify_journal(p: Caller) -> dict[str, Any]:
        """Recompute the hash chain (admins only): any edit, removal or reordering shows."""
        if p.role is not Role.ADMIN:
            raise HTTPException(403, "verifying the whole journal needs an admin token")
        r = service.journal.verify()
        return {
            "ok": r.ok,
            "records": r.records,
            "first_bad_seq": r.first_bad_seq,
            "reason": r.reason,
        }

    # -- the acknowledge/dispose page behind SMS and WeCom links ---------------------------

    def link_subject(subject_id: str, t: str) -> tuple[Record, int]:
        if links is None:
            raise HTTPException(404, "links are not enabled")
        try:
            claims = links.verify(t, subject_id, now_ms())
        except LinkError as exc:
            raise HTTPException(403, f"链接无效或已过期 ({exc})") from None
        rec = store.get_subject(subject_id)
        if rec is None:
            raise NotFound(f"no alarm or warning {subject_id!r}")
        return rec, claims.expires_ms

    page = resources.files("alerts").joinpath("static/ack.html").read_text(encoding="utf-8")
    # The page's one inline script is allowed by its hash, nothing else may run.
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    page_csp = (
        f"default-src 'none'; script-src 'sha256-{script_hash}'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )

    @app.get("/a/{subject_id}", response_class=HTMLResponse, tags=["link"])
    def ack_page(subject_id: SubjectId) -> HTMLResponse:
        """The mobile page a link in an SMS or WeCom message opens; its script reads the
        subject through the link token and offers acknowledge and dispose."""
        return HTMLResponse(page, headers={"Content-Security-Policy": page_csp})

    def link_view(rec: Record, expires_ms: int) -> dict[str, Any]:
        is_alarm = isinstance(rec, AlarmRecord)
        name = service.routing.enterprises.get(rec.enterprise_code)
        points = service.registry.enterprise(rec.enterprise_code)
        enterprise = (
            (points[0].enterprise_name if points else "")
            or (name.name if name else "")
            or rec.enterprise_code
        )
        title = (
            rec.message or f"{rec.tag} {rec.parameter} {rec.kind}"
            if isinstance(rec, AlarmRecord)
            else f"{Colour(rec.colour).zh}色预警: {rec.reason}"
        )
        return {
            "subject_kind": "alarm" if is_alarm else "warning",
            "subject_id": rec.subject_id,
            "enterprise": enterprise,
            "title": title,
            "colour": rec.colour,
            "colour_zh": Colour(rec.colour).zh,
            "phase": rec.phase,
            "phase_zh": PHASE_ZH[rec.phase],
            "tag": rec.tag if is_alarm else rec.hazard_code,
            "level": rec.level if is_alarm else None,
            "value": rec.value if is_alarm else None,
            "threshold": rec.threshold if is_alarm else None,
            "unit": rec.unit if is_alarm else "",
            "raised": iso_ms(rec.raised_ms),
            "acked_by": rec.acked_by,
            "closed_by": rec.closed_by,
            "disposition": None if rec.disposition is None else DISPOSITION_ZH[rec.disposition],
            "dispositions": [{"code": d.value, "label": DISPOSITION_ZH[d]} for d in Disposition],
            "link_expires": iso_ms(expires_ms),
        }

    @app.get(
        "/a/{subject_id}/data",
        response_model=LinkViewOut,
        responses=_err(403, 404),
        tags=["link"],
    )
    def link_data(subject_id: SubjectId, t: Token) -> dict[str, Any]:
        """What the link page shows (only this subject, only while the link is valid)."""
        rec, exp = link_subject(subject_id, t)
        return link_view(rec, exp)

    @app.post(
        "/a/{subject_id}/acknowledge",
        response_model=LinkViewOut,
        responses=_err(403, 404, 409),
        tags=["link"],
    )
    def link_acknowledge(subject_id: SubjectId, t: Token, body: LinkAckIn) -> dict[str, Any]:
        """Acknowledge from the link page; the person typed in is recorded with "via link"."""
        rec, exp = link_subject(subject_id, t)
        rec = service.acknowledge(subject_id, _link_actor(body.person), now_ms(), note=body.note)
        return link_view(rec, exp)

    @app.post(
        "/a/{subject_id}/dispose",
        response_model=LinkViewOut,
        responses=_err(403, 404, 409),
        tags=["link"],
    )
    def link_dispose(subject_id: SubjectId, t: Token, body: LinkDisposeIn) -> dict[str, Any]:
        """File the disposition from the link page."""
        rec, exp = link_subject(subject_id, t)
        rec = service.dispose(subject_id, _link_actor(body.person), body.code, body.note, now_ms())
        return link_view(rec, exp)

    return app


def _link_actor(person: str) -> str:
    # The link proves possession of a message sent to this subject's recipients, not who
    # typed the name; the journal says so.
    return f"{' '.join(person.split())} (via link)"


class ApiServer:
    """The app under uvicorn in a daemon thread (the embedded runner, the demo and the e2e
    tests serve it this way); `port=0` picks a free port, `url` says which."""

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: dict[str, Any] | None = None,
    ) -> None:
        import socket

        import uvicorn

        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = host, self._sock.getsockname()[1]
        # Uvicorn's own log config would replace the process's logging setup: keep ours.
        # `ssl`: uvicorn's ssl_* arguments (hazardwatch.tls.uvicorn_ssl_kwargs) for HTTPS.
        self._tls = bool(ssl)
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, lifespan="off", access_log=True, **(ssl or {}))
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> ApiServer:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._sock.close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
