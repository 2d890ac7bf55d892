"""`hazardwatch mqtt acl` without a broker: which logins and topics the registry yields, where
passwords come from, and that no error or output ever shows a password."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hazardwatch.access import (
    AccessError,
    UserKind,
    env_var_for,
    plan_users,
    read_password_file,
    render_acl,
    resolve_passwords,
)
from hazardwatch.cli import main
from ingest.model import Industry, Point, Registry


def _p(ent: str, gw: str, tag: str) -> Point:
    return Point(
        enterprise_code=ent,
        enterprise_name=ent,
        industry=Industry.HAZCHEM,
        district="D",
        hazard_code="",
        hazard_level=None,
        zone="Z",
        gateway_code=gw,
        tag=tag,
        parameter="level",
        unit="m",
    )


def test_one_login_per_gateway_writing_only_its_subtree():
    reg = Registry(
        [_p("E1", "GW1", "A"), _p("E1", "GW1", "B"), _p("E1", "GW2", "C"), _p("E2", "", "D")]
    )
    users = plan_users(reg, prefix="site", service_user="svc", dead_letter_topic="site/_dl")
    assert [(u.name, u.kind, u.write, u.read, u.points) for u in users] == [
        ("svc", UserKind.SERVICE, ("site/_dl",), ("#",), 0),
        ("E1.GW1", UserKind.GATEWAY, ("site/E1/GW1/#",), (), 2),
        ("E1.GW2", UserKind.GATEWAY, ("site/E1/GW2/#",), (), 1),
        # points without a gateway may come through any gateway of their enterprise
        ("E2", UserKind.ENTERPRISE, ("site/E2/#",), (), 1),
    ]
    acl = render_acl(users)
    assert "user svc\ntopic read #\ntopic write site/_dl\n" in acl
    assert "user E1.GW2\ntopic write site/E1/GW2/#\n" in acl
    assert "\npattern " not in acl


def test_logins_that_would_collide_are_all_named():
    reg = Registry([_p("E.1", "G", "A"), _p("E", "1.G", "B"), _p("hazardwatch", "", "C")])
    with pytest.raises(AccessError) as e:
        plan_users(reg)
    msg = str(e.value)
    assert "login 'E.1.G' is already used by enterprise 'E.1' gateway 'G'" in msg
    assert "login 'hazardwatch' is already used by the service user" in msg


def test_bad_prefix_and_service_user_are_refused():
    with pytest.raises(AccessError) as e:
        plan_users(Registry([]), prefix="hw/#", service_user="a b", dead_letter_topic="x/+")
    assert len(e.value.problems) == 3


def test_password_sources_in_order_and_missing_ones_name_their_variable():
    users = plan_users(Registry([_p("E1", "GW-1", "A"), _p("E2", "GW1", "B")]))
    env = {env_var_for("E1.GW-1"): "from-env", env_var_for("E2.GW1"): "env-2"}
    assert env_var_for("E1.GW-1") == "MQTT_PASSWORD_E1_GW_1"
    pw, gen = resolve_passwords(
        users,
        file_entries={"E2.GW1": "from-file"},
        environ=env,
        fallback={"hazardwatch": "svc"},
    )
    assert pw == {"hazardwatch": "svc", "E1.GW-1": "from-env", "E2.GW1": "from-file"}
    assert gen == []
    with pytest.raises(AccessError) as e:
        resolve_passwords(users, environ={env_var_for("E2.GW1"): "s3cret-value"})
    assert e.value.problems == [
        "no password for 'hazardwatch' (password file, or $MQTT_PASSWORD_HAZARDWATCH)",
        "no password for 'E1.GW-1' (password file, or $MQTT_PASSWORD_E1_GW_1)",
    ]
    assert "s3cret-value" not in str(e.value)
    with pytest.raises(AccessError) as e:
        resolve_passwords(
            users, environ=env, file_entries={"E2.GW1": "a:b"}, fallback={"hazardwatch": "s"}
        )
    assert e.value.problems == ["the password of 'E2.GW1' contains ':'; Mosquitto cannot take it"]
    pw, gen = resolve_passwords(users, environ={}, generate_missing=True)
    assert gen == ["hazardwatch", "E1.GW-1", "E2.GW1"]
    assert len(set(pw.values())) == 3 and all(len(v) >= 20 for v in pw.values())


def test_password_file_must_be_private_and_bad_lines_are_not_echoed(tmp_path: Path):
    f = tmp_path / "pw"
    f.write_text("# gateways\nE1.GW1:a:b:c\n\nnot-a-pair-TOPSECRET\n")
    f.chmod(0o644)
    with pytest.raises(AccessError, match=r"readable by group or others.*expected chmod 600"):
        read_password_file(f)
    f.chmod(0o600)
    with pytest.raises(AccessError) as e:
        read_password_file(f)
    assert e.value.problems == [f"{f}:4: expected `user:password`"]
    f.write_text("E1.GW1:a:b:c\n")
    assert read_password_file(f) == {"E1.GW1": "a:b:c"}


def test_cli_writes_private_files_and_never_prints_a_password(
    tmp_path: Path, clean_env, monkeypatch, capsys
):
    assert shutil.which("mosquitto_passwd"), "scripts/system-deps installs mosquitto_passwd"
    reg = tmp_path / "registry.csv"
    reg.write_text("enterprise_code,gateway_code,tag,parameter,unit\nE1,GW1,LT-1,level,m\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MQTT_PASSWORD_E1_GW1", "gw-pass-SECRET-1")
    monkeypatch.setenv("HW_MQTT__PASSWORD", "svc-pass-SECRET-2")
    rc = main(["mqtt", "acl", "-r", str(reg), "-o", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "SECRET" not in out.out + out.err
    assert "wrote" in out.out and "for 2 login(s)" in out.out
    for name in ("acl", "passwd"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o600
    assert "SECRET" not in (tmp_path / "out" / "passwd").read_text()
    assert not (tmp_path / "out" / "generated-passwords").exists()
    assert not list((tmp_path / "out").glob(".passwd.*")), "temporary plain file left behind"

    monkeypatch.delenv("MQTT_PASSWORD_E1_GW1")
    rc = main(["mqtt", "acl", "-r", str(reg), "-o", str(tmp_path / "out2")])
    out = capsys.readouterr()
    assert rc == 1
    assert "no password for 'E1.GW1' (password file, or $MQTT_PASSWORD_E1_GW1)" in out.err
    assert "SECRET" not in out.out + out.err
    assert not (tmp_path / "out2" / "passwd").exists()

    rc = main(["mqtt", "acl", "-r", str(reg), "-o", str(tmp_path / "out3"), "--generate-missing"])
    assert rc == 0
    gen = tmp_path / "out3" / "generated-passwords"
    assert gen.stat().st_mode & 0o777 == 0o600
    assert [
        ln.split(":")[0]
        for ln in gen.read_text().splitlines()
        if ":" in ln and not ln.startswith("#")
    ] == ["E1.GW1"]
    assert os.environ.get("MQTT_PASSWORD_E1_GW1") is None


def test_cli_names_a_missing_registry(tmp_path: Path, clean_env, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["mqtt", "acl", "-o", str(tmp_path / "out")])
    assert rc == 2
    assert "no point registry given" in capsys.readouterr().err
