"""The HTTP API through FastAPI's TestClient over a real service and SQLite store: what each
role sees and may do, that everything outside a caller's scope answers exactly like something
that does not exist, and that every action lands in the journal with the caller as actor."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.auth import LinkError, LinkSigner, TokenAuth, hash_token
from alerts.journal import verify_export
from alerts.lifecycle import Phase

from .test_api_fixtures import (
    ADMIN,
    DUTY_KFQ,
    DUTY_YH,
    E001,
    E002,
    MIN,
    T0,
    client_fixture,  # noqa: F401 - the `client` fixture
    world_fixture,  # noqa: F401 - the `world` fixture
)

pytestmark = pytest.mark.integration

A = "/api/v1"


def h(token: str) -> dict[str, str]:
    return {"Authorization": token}


def ids(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [i["subject_id"] for i in resp.json()["items"]]


def journal_kinds(world, subject_id: str) -> list[tuple[str, str]]:
    return [(e.kind, e.actor) for e in world.service.journal.entries(subject_id=subject_id)]


# -- authentication --------------------------------------------------------------------------


def test_health_needs_no_token_and_everything_else_does(client):
    assert client.get(f"{A}/health").json()["status"] == "ok"
    for path in (f"{A}/alarms", f"{A}/warnings", f"{A}/me", f"{A}/alarms/a-e001-1"):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = client.get(path, headers=h("Bearer not-a-token"))
        assert r.status_code == 401
    r = client.post(f"{A}/subjects/a-e001-1/acknowledge", json={})
    assert r.status_code == 401


def test_me_names_the_role_and_scope(client):
    assert client.get(f"{A}/me", headers=h(E001)).json() == {
        "name": "E001 安全科",
        "role": "enterprise",
        "enterprises": ["E001"],
        "districts": [],
    }
    assert client.get(f"{A}/me", headers=h(DUTY_KFQ)).json()["districts"] == ["KFQ"]


def test_tokens_file_keeps_only_hashes(tmp_path):
    f = tmp_path / "tokens.yaml"
    f.write_text(
        "tokens:\n"
        f"  - {{name: ops, role: admin, sha256: {hash_token('s3cret-token-value')}}}\n"
        f"  - {{name: e1, role: enterprise, enterprises: [E001], sha256: {hash_token('t2')}}}\n",
        encoding="utf-8",
    )
    auth = TokenAuth.from_file(f)
    assert auth.authenticate("s3cret-token-value").name == "ops"
    assert auth.authenticate("t2").enterprises == {"E001"}
    assert auth.authenticate("s3cret-token-valuX") is None


def test_bad_tokens_file_lists_every_problem_without_echoing_values(tmp_path):
    from alerts.auth import AuthError

    f = tmp_path / "tokens.yaml"
    f.write_text(
        "tokens:\n  - {name: a, role: enterprise, sha256: plaintext-token}\n"
        "  - {name: b, role: wizard, sha256: " + "0" * 64 + "}\n",
        encoding="utf-8",
    )
    with pytest.raises(AuthError) as exc:
        TokenAuth.from_file(f)
    msg = str(exc.value)
    assert "3 problem(s)" in msg and "tokens.0.sha256" in msg and "tokens.1.role" in msg
    assert "quoted string" in msg  # 000...0 read by YAML as a number
    assert "plaintext-token" not in msg


# -- scope: reads ----------------------------------------------------------------------------


def test_each_role_lists_exactly_its_scope(client):
    assert ids(client.get(f"{A}/alarms", headers=h(E001))) == ["a-e001-2", "a-e001-1"]
    assert ids(client.get(f"{A}/alarms", headers=h(E002))) == ["a-e002-1"]
    assert ids(client.get(f"{A}/alarms", headers=h(DUTY_KFQ))) == [
        "a-e002-1",
        "a-e001-2",
        "a-e001-1",
    ]
    assert ids(client.get(f"{A}/alarms", headers=h(DUTY_YH))) == ["a-e003-1"]
    assert len(ids(client.get(f"{A}/alarms", headers=h(ADMIN)))) == 4
    assert ids(client.get(f"{A}/warnings", headers=h(E001))) == ["w-e001-1"]
    assert ids(client.get(f"{A}/warnings", headers=h(DUTY_YH))) == []


def test_asking_for_another_enterprise_by_filter_returns_nothing(client):
    r = client.get(f"{A}/alarms", params={"enterprise": ["E002", "E001"]}, headers=h(E001))
    assert ids(r) == ["a-e001-2", "a-e001-1"]
    r = client.get(f"{A}/alarms", params={"enterprise": "E002"}, headers=h(E001))
    assert ids(r) == [] and r.json()["total"] == 0
    r = client.get(f"{A}/alarms", params={"district": "YH"}, headers=h(DUTY_KFQ))
    assert ids(r) == []


@pytest.mark.parametrize(
    "path",
    ["/alarms/{a}", "/warnings/{w}", "/alarms/{a}"],
)
def test_another_enterprises_subject_looks_exactly_like_a_missing_one(client, path):
    other = client.get(A + path.format(a="a-e002-1", w="w-e002-1"), headers=h(E001))
    missing = client.get(A + path.format(a="nope-0000", w="nope-0000"), headers=h(E001))
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"].replace("a-e002-1", "X").replace(
        "w-e002-1", "X"
    ) == missing.json()["detail"].replace("nope-0000", "X")


def test_filters_and_paging(client, world):
    r = client.get(f"{A}/alarms", params={"colour": "orange"}, headers=h(ADMIN))
    assert ids(r) == ["a-e001-2"]
    r = client.get(f"{A}/alarms", params={"since": "2026-11-19T08:28:00Z"}, headers=h(ADMIN))
    assert ids(r) == ["a-e003-1", "a-e002-1"]
    r = client.get(f"{A}/alarms", params={"until": "2026-11-19T16:27:00+08:00"}, headers=h(ADMIN))
    assert ids(r) == ["a-e001-1"]
    r = client.get(f"{A}/alarms", params={"limit": 2, "offset": 1}, headers=h(ADMIN))
    assert ids(r) == ["a-e002-1", "a-e001-2"] and r.json()["total"] == 4
    client.post(f"{A}/subjects/a-e001-1/acknowledge", json={}, headers=h(E001))
    r = client.get(f"{A}/alarms", params={"state": "acknowledged"}, headers=h(ADMIN))
    assert ids(r) == ["a-e001-1"]
    r = client.get(f"{A}/alarms", params={"limit": 0}, headers=h(ADMIN))
    assert r.status_code == 422


# -- scope: actions --------------------------------------------------------------------------

ACTIONS = [
    ("post", "/subjects/{id}/acknowledge", {"note": "x"}),
    ("post", "/subjects/{id}/dispose", {"code": "process_fluctuation", "note": "x"}),
    ("post", "/alarms/{id}/shelve", {"reason": "calibration", "duration_s": 600}),
]


@pytest.mark.parametrize(("method", "path", "body"), ACTIONS)
@pytest.mark.parametrize(
    ("token", "target"),
    [(E001, "a-e002-1"), (E002, "a-e001-1"), (DUTY_YH, "a-e001-1"), (DUTY_KFQ, "a-e003-1")],
)
def test_no_one_acts_outside_their_scope(client, world, method, path, body, token, target):
    before = world.store.get_alarm(target)
    journal_before = world.store.journal_head()
    r = getattr(client, method)(A + path.format(id=target), json=body, headers=h(token))
    assert r.status_code == 404, r.text
    assert world.store.get_alarm(target) == before
    assert world.store.list_actions(subject_id=target) == []
    assert world.store.journal_head() == journal_before


def test_acknowledge_then_dispose_own_alarm_is_journaled_with_the_caller(client, world):
    r = client.post(f"{A}/subjects/a-e001-1/acknowledge", json={"note": "到场"}, headers=h(E001))
    assert r.status_code == 200 and r.json()["phase"] == "acknowledged"
    assert r.json()["acked_by"] == "E001 安全科"
    world.now[0] += 10 * MIN
    # The alarm clears, then the enterprise files what it was.
    world.service.on_alarm(
        __import__("tests.integration.test_api_fixtures", fromlist=["x"]).alarm_event(
            "a-e001-1", "E001", "AT-1", state="cleared", ts=T0 + 12 * MIN, value=5.0
        ),
        T0 + 12 * MIN,
    )
    r = client.post(
        f"{A}/subjects/a-e001-1/dispose",
        json={"code": "process_fluctuation", "note": "进料波动", "person": "李四"},
        headers=h(E001),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["phase"] == "closed" and body["disposition"] == "process_fluctuation"
    assert body["closed_by"] == "李四 (recorded by E001 安全科)"
    actions = [
        (a["action"], a["user"])
        for a in client.get(f"{A}/alarms/a-e001-1", headers=h(E001)).json()["actions"]
    ]
    assert actions == [
        ("acknowledge", "E001 安全科"),
        ("dispose", "李四 (recorded by E001 安全科)"),
    ]
    kinds = journal_kinds(world, "a-e001-1")
    assert ("action.acknowledge", "E001 安全科") in kinds
    assert ("action.dispose", "李四 (recorded by E001 安全科)") in kinds
    # A second disposition is refused, saying why.
    r = client.post(
        f"{A}/subjects/a-e001-1/dispose", json={"code": "other", "note": "again"}, headers=h(E001)
    )
    assert r.status_code == 409 and r.json()["detail"]


def test_disposing_a_still_present_alarm_fires_it_again(client, world):
    r = client.post(
        f"{A}/subjects/a-e002-1/dispose",
        json={"code": "instrument_fault", "note": "探头脏"},
        headers=h(E002),
    )
    assert r.status_code == 200
    rec = world.store.get_alarm("a-e002-1")
    assert rec.phase is Phase.FIRING and rec.reopened == 1


@pytest.mark.parametrize(
    "body",
    [
        {"code": "other"},
        {"code": "other", "note": "   "},
        {"code": "fixed_it"},
        {},
        {"code": "process_fluctuation", "colour": "red"},
    ],
)
def test_bad_disposition_bodies_are_422_naming_the_field(client, world, body):
    r = client.post(f"{A}/subjects/a-e001-1/dispose", json=body, headers=h(E001))
    assert r.status_code == 422
    assert world.store.get_alarm("a-e001-1").phase is Phase.FIRING


def test_shelving_is_for_duty_and_admin_and_expires(client, world):
    r = client.post(
        f"{A}/alarms/a-e001-1/shelve", json={"reason": "标定", "duration_s": 600}, headers=h(E001)
    )
    assert r.status_code == 403
    r = client.post(
        f"{A}/alarms/a-e001-1/shelve",
        json={"reason": "探头标定", "until": "2026-11-19T09:31:40Z"},
        headers=h(DUTY_KFQ),
    )
    assert r.status_code == 201, r.text
    shelf = r.json()
    assert shelf["shelved_by"] == "开发区值班室" and shelf["expires"] == "2026-11-19T09:31:40.000Z"
    assert world.store.get_alarm("a-e001-1").suppressed
    assert [s["shelf_id"] for s in client.get(f"{A}/shelves", headers=h(E001)).json()] == [
        shelf["shelf_id"]
    ]
    assert client.get(f"{A}/shelves", headers=h(E002)).json() == []
    assert client.post(f"{A}/shelves/{shelf['shelf_id']}/end", headers=h(E002)).status_code == 404
    r = client.post(f"{A}/shelves/{shelf['shelf_id']}/end", headers=h(DUTY_KFQ))
    assert r.status_code == 200 and r.json()["ended"]
    kinds = journal_kinds(world, "a-e001-1")
    assert ("action.shelve", "开发区值班室") in kinds and (
        "action.unshelve",
        "开发区值班室",
    ) in kinds
    assert not world.store.get_alarm("a-e001-1").suppressed
    # An expiry in the past, or both expiries, is refused with a reason.
    r = client.post(
        f"{A}/alarms/a-e001-1/shelve",
        json={"reason": "x", "until": "2020-01-01T00:00:00Z"},
        headers=h(ADMIN),
    )
    assert r.status_code == 409 and "future" in r.json()["detail"]
    r = client.post(
        f"{A}/alarms/a-e001-1/shelve",
        json={"reason": "x", "until": "2026-11-20T00:00:00Z", "duration_s": 5},
        headers=h(ADMIN),
    )
    assert r.status_code == 422


def test_filings_for_own_enterprise_only(client, world):
    body = {
        "kind": "maintenance",
        "enterprise_code": "E001",
        "hazard_code": "H01",
        "planned_end": "2026-11-20T08:00:00Z",
        "note": "大检修",
    }
    r = client.post(f"{A}/filings", json=body, headers=h(E001))
    assert r.status_code == 201, r.text
    f = r.json()
    assert ("action.file", "E001 安全科") in journal_kinds(world, f["filing_id"])
    assert f["filed_by"] == "E001 安全科" and f["planned_end"] == "2026-11-20T08:00:00.000Z"
    # Another enterprise, and one that does not exist, answer the same.
    r_other = client.post(f"{A}/filings", json={**body, "enterprise_code": "E002"}, headers=h(E001))
    r_none = client.post(f"{A}/filings", json={**body, "enterprise_code": "E999"}, headers=h(E001))
    assert r_other.status_code == r_none.status_code == 404
    assert world.store.list_filings(enterprise="E002") == []
    assert [x["filing_id"] for x in client.get(f"{A}/filings", headers=h(E002)).json()] == []
    assert (
        client.post(f"{A}/filings/{f['filing_id']}/end", json={}, headers=h(E002)).status_code
        == 404
    )
    r = client.post(f"{A}/filings", json={**body, "planned_end": None}, headers=h(E001))
    assert r.status_code == 409 and "planned end" in r.json()["detail"]
    r = client.post(f"{A}/filings/{f['filing_id']}/end", json={"note": "完工"}, headers=h(E001))
    assert r.status_code == 200 and r.json()["actual_end"]
    assert ("action.end_filing", "E001 安全科") in journal_kinds(world, f["filing_id"])


# -- journal ---------------------------------------------------------------------------------


def test_journal_export_is_scoped_verifiable_and_itself_journaled(client, world, tmp_path):
    client.post(f"{A}/subjects/a-e001-1/acknowledge", json={}, headers=h(E001))
    client.post(f"{A}/subjects/a-e002-1/acknowledge", json={}, headers=h(E002))
    r = client.get(f"{A}/journal", headers=h(ADMIN))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    out = tmp_path / "export.jsonl"
    out.write_bytes(r.content)
    assert verify_export(out).ok
    records = [json.loads(line) for line in r.text.splitlines()]
    assert records[-1]["kind"] == "action.export_journal" and records[-1]["actor"] == "ops"
    mine = [
        json.loads(line) for line in client.get(f"{A}/journal", headers=h(E001)).text.splitlines()
    ]
    subjects = {rec["subject_id"] for rec in mine}
    assert "a-e001-1" in subjects and "a-e002-1" not in subjects and "a-e003-1" not in subjects
    assert client.get(f"{A}/journal/verify", headers=h(E001)).status_code == 403
    v = client.get(f"{A}/journal/verify", headers=h(ADMIN)).json()
    assert v["ok"] and v["records"] == len(records) + 1  # + the second export


# -- links -----------------------------------------------------------------------------------


def test_link_gives_this_subject_only_and_expires(client, world):
    r = client.get(world.link("a-e001-1").replace("?", "/data?"))
    assert r.status_code == 200 and r.json()["title"] == "AT-1 氨气一级报警"
    token = world.link("a-e001-1").split("t=")[1]
    assert client.get(f"/a/a-e002-1/data?t={token}").status_code == 403
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(f"/a/a-e001-1/data?t={tampered}").status_code == 403
    expired = world.links.sign("a-e001-1", world.clock() - 1)
    r = client.get(f"/a/a-e001-1/data?t={expired}")
    assert r.status_code == 403 and "过期" in r.json()["detail"]
    forged = LinkSigner("another-secret").sign("a-e001-1", world.clock() + 60_000)
    assert client.get(f"/a/a-e001-1/data?t={forged}").status_code == 403


def test_link_actions_are_journaled_as_via_link(client, world):
    link = world.link("a-e001-2")
    r = client.post(link.replace("?", "/acknowledge?"), json={"person": "王五"})
    assert r.status_code == 200 and r.json()["phase"] == "acknowledged"
    r = client.post(
        link.replace("?", "/dispose?"),
        json={"person": "王五", "code": "real_alarm_handled", "note": "已关阀"},
    )
    assert r.status_code == 200, r.text
    assert ("action.dispose", "王五 (via link)") in journal_kinds(world, "a-e001-2")
    assert client.post(link.replace("?", "/acknowledge?"), json={"person": ""}).status_code == 422


def test_link_page_is_served_with_a_strict_policy(client, world):
    r = client.get(world.link("a-e001-1"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'name="viewport"' in r.text and "确认收到" in r.text and "提交处置" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline'" not in csp.split("style-src")[0]
    assert r.headers["referrer-policy"] == "no-referrer"


def test_link_tokens_never_reach_the_access_log(client, world, caplog):
    import logging

    token = world.link("a-e001-1").split("t=")[1]
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    # The record uvicorn writes for a request (its access-log format and arguments).
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET", f"/a/a-e001-1?t={token}", "1.1", 200
    )
    assert token not in caplog.text and "/a/a-e001-1?t=********" in caplog.text


@settings(max_examples=100, deadline=None)
@given(
    st.text(min_size=1, max_size=40),
    st.integers(min_value=1, max_value=10**10),
    st.data(),
)
def test_link_tokens_round_trip_and_any_change_breaks_them(subject, exp_s, data):
    signer = LinkSigner("k" * 32)
    token = signer.sign(subject, exp_s * 1000)
    assert signer.verify(token, subject, exp_s * 1000 - 1).subject_id == subject
    i = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    c = data.draw(st.sampled_from("AZaz09-_.").filter(lambda ch: ch != token[i]))
    broken = token[:i] + c + token[i + 1 :]
    with pytest.raises(LinkError):
        signer.verify(broken, subject, exp_s * 1000 - 1)
    with pytest.raises(LinkError):
        signer.verify(token, subject, exp_s * 1000)  # expired at its expiry


def test_a_warning_is_disposed_from_its_link_too(client, world):
    link = world.link("w-e001-1")
    view = client.get(link.replace("?", "/data?")).json()
    assert (view["subject_kind"], view["title"], view["colour_zh"]) == (
        "warning",
        "橙色预警: 二级报警",
        "橙",
    )
    r = client.post(
        link.replace("?", "/dispose?"),
        json={"person": "甲", "code": "real_alarm_handled", "note": "已处置"},
    )
    assert r.status_code == 200 and r.json()["phase"] == "closed"
    assert world.store.get_warning("w-e001-1").closed_by == "甲 (via link)"
