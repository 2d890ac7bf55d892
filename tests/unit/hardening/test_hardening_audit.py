"""scripts/audit's licence check: SPDX expressions, free-text fields, classifiers and bundled
licence files are read the way a reviewer would, and a package under a licence not on the
allow-list fails the run by name."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from importlib.metadata import PathDistribution
from pathlib import Path

import pytest

from tests.conftest import REPO


def _load_script():
    loader = importlib.machinery.SourceFileLoader("hw_audit_script", str(REPO / "scripts/audit"))
    spec = importlib.util.spec_from_loader("hw_audit_script", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


audit = _load_script()


@pytest.mark.parametrize(
    ("expr", "ok", "bad"),
    [
        ("MIT", True, []),
        ("Apache-2.0 AND MIT", True, []),
        ("EPL-2.0 OR BSD-3-Clause", True, []),
        ("GPL-3.0-only OR MIT", True, []),
        ("GPL-3.0-only AND MIT", False, ["GPL-3.0-only"]),
        ("(MIT OR GPL-2.0) AND LGPL-3.0", False, ["LGPL-3.0"]),
        ("Apache-2.0 WITH LLVM-exception", True, []),
        ("AGPL-3.0", False, ["AGPL-3.0"]),
        ("SSPL-1.0 OR BUSL-1.1", False, ["SSPL-1.0", "BUSL-1.1"]),
    ],
)
def test_spdx_expressions(expr, ok, bad):
    assert audit._spdx_allowed(expr) == (ok, bad)


def _dist(tmp_path: Path, name: str, headers: str, licence_file: str | None = None):
    info = tmp_path / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.4\nName: {name}\nVersion: 1.0\n{headers}", encoding="utf-8"
    )
    if licence_file is not None:
        (info / "LICENSE").write_text(licence_file, encoding="utf-8")
        (info / "RECORD").write_text(f"{info.name}/LICENSE,,\n{info.name}/METADATA,,\n")
    return PathDistribution(info)


def test_licence_sources_in_order(tmp_path: Path):
    cases = {
        "a": ("License-Expression: MIT\nLicense: GPL\n", None, ("MIT", "License-Expression")),
        "b": ("License: Apache 2.0\n", None, ("Apache-2.0", "License")),
        "c": (
            "Classifier: License :: OSI Approved :: BSD License\n"
            "Classifier: License :: OSI Approved :: GNU General Public License v3 (GPLv3)\n",
            None,
            ("BSD OR GPL-3.0", "classifier"),
        ),
        "d": (
            "",
            "Redistribution and use in source and binary forms, with or without\n"
            "modification, are permitted ...\n",
            ("BSD-2-Clause", "file LICENSE"),
        ),
        "e": ("", "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n", ("GPL", "file LICENSE")),
        "f": ("", None, ("UNKNOWN", "no licence metadata or file")),
    }
    for name, (headers, text, expected) in cases.items():
        sub = tmp_path / name
        sub.mkdir()
        assert audit.licence_of(_dist(sub, name, headers, text)) == expected, name


def test_licences_only_passes_on_this_environment():
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts/audit"), "--licences-only"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "licence check ok:" in r.stdout
    assert " paho-mqtt " in r.stdout and "EPL-2.0 OR BSD-3-Clause" in r.stdout


def test_a_copyleft_package_fails_the_run_by_name(tmp_path: Path, monkeypatch, capsys):
    gpl = _dist(tmp_path, "evil-lib", "License-Expression: GPL-3.0-only\n")
    monkeypatch.setattr(audit, "runtime_closure", lambda root="hazardwatch": [gpl])
    assert audit.check_licences(all_installed=False) == 1
    out = capsys.readouterr().out
    assert "licence check FAILED: 1 of 1" in out
    assert (
        "evil-lib 1.0: GPL-3.0-only (License-Expression); not on the allow-list: GPL-3.0-only"
        in out
    )


# ------------------------------------------------------------------ the offline advisory snapshot


def _entry(*events, versions=None):
    e = {"id": "PYSEC-X", "aliases": ["CVE-X"], "package": "pkg", "ranges": [list(events)]}
    if versions is not None:
        e = {**e, "ranges": [], "versions": versions}
    return e


@pytest.mark.parametrize(
    ("version", "entry", "affected"),
    [
        ("1.0", _entry({"introduced": "0"}, {"fixed": "2.0"}), True),
        ("2.0", _entry({"introduced": "0"}, {"fixed": "2.0"}), False),
        ("0.9", _entry({"introduced": "1.0"}, {"fixed": "2.0"}), False),
        ("1.5", _entry({"introduced": "1.0"}, {"last_affected": "1.5"}), True),
        ("1.6", _entry({"introduced": "1.0"}, {"last_affected": "1.5"}), False),
        # two affected spans in one range: 1.x before 1.4, and 2.x before 2.2
        (
            "2.1",
            _entry(
                {"introduced": "1.0"}, {"fixed": "1.4"}, {"introduced": "2.0"}, {"fixed": "2.2"}
            ),
            True,
        ),
        (
            "1.5",
            _entry(
                {"introduced": "1.0"}, {"fixed": "1.4"}, {"introduced": "2.0"}, {"fixed": "2.2"}
            ),
            False,
        ),
        ("3.0", _entry({"introduced": "0"}), True),  # no fix yet
        ("0.12.01", _entry(versions=["0.12.01"]), True),
        ("0.13", _entry(versions=["0.12.01"]), False),
    ],
)
def test_osv_ranges_are_read_as_the_osv_spec_says(version, entry, affected):
    assert audit._affected(version, entry) is affected


def test_a_vulnerable_installed_version_fails_the_offline_audit(monkeypatch, capsys, tmp_path):
    """The committed snapshot knows setuptools before 65.5.1 (CVE-2022-40897): a venv that kept
    Python's bundled 65.5.0 fails by name; the same package fixed passes; an ignored id passes."""
    import json as _json

    snap = _json.loads(audit.SNAPSHOT.read_text(encoding="utf-8"))
    found = audit.snapshot_findings({"setuptools": "65.5.0"}, snap)
    assert any(vid == "PYSEC-2022-43012" for _n, _v, vid, _a in found), found
    assert audit.snapshot_findings({"setuptools": "80.0.0"}, snap) == []
    monkeypatch.setitem(audit.IGNORED_VULNS, "CVE-2022-40897", "test")
    assert all(
        vid != "PYSEC-2022-43012"
        for _n, _v, vid, _a in audit.snapshot_findings({"setuptools": "65.5.0"}, snap)
    )


def test_the_offline_audit_passes_on_this_environment_and_says_how_old_it_is(capsys):
    assert audit.check_snapshot() == 0
    out = capsys.readouterr().out
    assert "committed PyPA advisory snapshot" in out
    assert "vulnerability audit ok (snapshot of" in out
