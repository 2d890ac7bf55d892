"""`hazardwatch registry check` and `hazardwatch ingest decode`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from hazardwatch.cli import main

DATA = Path(__file__).resolve().parents[2] / "data" / "ingest"


def test_registry_check_good_file(capsys, clean_env):
    rc = main(["registry", "check", str(DATA / "registry.csv")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "10 points in 2 enterprises" in out
    assert "gas.NH3" in out and "ok: no problems" in out


def test_registry_check_lists_every_problem_and_exits_1(capsys, clean_env):
    rc = main(["registry", "check", str(DATA / "registry_bad.csv")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "16 problem(s)" in err
    assert "registry_bad.csv:line 4: unit: 'kPa' does not fit level" in err
    assert "registry_bad.csv:line 17: 3 cells but the header has 20 columns" in err
    assert "Traceback" not in err


def test_registry_check_json(capsys, clean_env):
    rc = main(["registry", "check", "--json", str(DATA / "registry_bad.csv")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert {
        "line": 7,
        "column": "tag",
        "message": "duplicate tag 'AT-1' in enterprise 'QJ001' (first on line 2)",
    } in out["problems"]
    rc = main(["registry", "check", "--json", str(DATA / "registry.csv")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["points"] == 10 and out["enterprises"]["QJ002"]["occupancy"] == 1


def test_registry_check_missing_file(capsys, clean_env):
    rc = main(["registry", "check", "/nonexistent/points.csv"])
    assert rc == 1
    assert "cannot read file" in capsys.readouterr().err


def test_ingest_decode_shows_readings_and_rejects(tmp_path, capsys, clean_env):
    payload = tmp_path / "p.json"
    payload.write_text(
        json.dumps(
            {
                "ts": "2026-11-29T08:00:00+08:00",
                "data": [{"tag": "PT-1101", "v": 1600, "u": "kPa"}, {"tag": "AT-1101", "v": "x"}],
            }
        )
    )
    rc = main(
        [
            "ingest",
            "decode",
            "-r",
            str(DATA / "registry.csv"),
            "-t",
            "hw/QJ001/GW01/data",
            "--received",
            "2026-11-29T00:00:01Z",
            str(payload),
        ]
    )
    cap = capsys.readouterr()
    assert rc == 1
    (line,) = cap.out.splitlines()
    row = json.loads(line)
    assert row["tag"] == "PT-1101" and row["unit"] == "MPa" and abs(row["value"] - 1.6) < 1e-12
    assert row["ts"] == "2026-11-29T00:00:00.000Z"
    assert "rejected [1]: wrong_type: Expected `float`, got `str` at $.data[1].v" in cap.err


def test_ingest_decode_provincial_ok(tmp_path, capsys, clean_env):
    payload = tmp_path / "p.json"
    payload.write_text('{"tnm": "AT-1101", "ts": "2026-11-29 08:00:00", "val": "27.20"}')
    rc = main(
        [
            "ingest",
            "decode",
            "-r",
            str(DATA / "registry.csv"),
            "-t",
            "hw/QJ001/GW01/data",
            "--format",
            "provincial",
            "--received",
            "2026-11-29T00:00:01Z",
            str(payload),
        ]
    )
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["value"] == 27.2


def test_ingest_decode_unknown_format(tmp_path, capsys, clean_env):
    payload = tmp_path / "p.json"
    payload.write_text("{}")
    rc = main(
        [
            "ingest",
            "decode",
            "-r",
            str(DATA / "registry.csv"),
            "-t",
            "hw/a/b/data",
            "--format",
            "nope",
            str(payload),
        ]
    )
    assert rc == 2
    assert "unknown --format 'nope'" in capsys.readouterr().err
