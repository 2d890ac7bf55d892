"""Routing: the strict YAML model (every problem reported at once), the colour ladder and
tiers, and `hazardwatch route test` printing what the service itself would do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerts.pipeline import Intent
from alerts.routing import (
    RouteSubject,
    RoutingError,
    colour_at_tier,
    load_routing,
    parse_routing,
    route,
)
from hazardwatch.cli import main
from rules.model import Colour
from tests.unit.alerts_core.conftest import DATA, T0, alarm

REPO = Path(__file__).resolve().parents[3]
E001_H01 = RouteSubject("E001", "H01", "QJ-KFQ")

# colour -> the people and robots told (E001/H01 of tests/data/alerts/routing.yaml)
LADDER = [
    (Colour.BLUE, ["+8613900000004", "e001-duty"]),
    (Colour.YELLOW, ["+8613900000004", "e001-duty", "+8613900000002"]),
    (
        Colour.ORANGE,
        [
            "+8613900000004",
            "e001-duty",
            "+8613900000002",
            "+8613900000001",
            "+8613900000008",
            "+8613900000007",
        ],
    ),
    (
        Colour.RED,
        [
            "+8613900000004",
            "e001-duty",
            "+8613900000002",
            "+8613900000001",
            "+8613900000008",
            "+8613900000007",
            "+8613900000009",
        ],
    ),
]


@pytest.mark.parametrize(("colour", "expected"), LADDER)
def test_the_colour_ladder(routing, colour, expected):
    assert [r.address for r in route(routing, E001_H01, colour)] == expected


def test_a_tier_routes_as_the_colour_that_many_steps_up(routing):
    assert route(routing, E001_H01, Colour.BLUE, 2) == route(routing, E001_H01, Colour.ORANGE)
    assert colour_at_tier(Colour.ORANGE, 5) is Colour.RED


def test_installation_contacts_win_and_enterprise_contacts_fill_in(routing):
    h02 = route(routing, RouteSubject("E001", "H02", "QJ-KFQ"), Colour.BLUE)
    assert [(r.role, r.name) for r in h02] == [
        ("operator", "王操作"),
        ("enterprise_duty", "e001-duty"),
    ]


def test_each_address_is_told_once_even_holding_several_roles():
    cfg = parse_routing(
        {
            "enterprises": {
                "E": {
                    "main": {"name": "A", "phone": "+8613900000001"},
                    "operator": {"name": "A", "phone": "+8613900000001"},
                }
            }
        }
    )
    assert len(route(cfg, RouteSubject("E", "", ""), Colour.RED)) == 1


def test_every_problem_in_a_bad_routing_file_is_reported_at_once(tmp_path):
    bad = tmp_path / "routing.yaml"
    bad.write_text(
        "version: 1\n"
        "enterprises:\n"
        "  E1:\n"
        "    park: NOWHERE\n"
        "    operator: {name: x, phone: 'call me'}\n"
        "    colour: red\n"
        "ladder:\n"
        "  blue: [operator, janitor]\n"
        "escalation:\n"
        "  ack_timeout_s: {blue: 10}\n",
        encoding="utf-8",
    )
    with pytest.raises(RoutingError) as exc:
        load_routing(bad)
    msg = str(exc.value)
    assert msg.startswith(f"{bad}: ")
    assert "enterprises.E1.operator.phone: Value error, must be a phone number" in msg
    assert "enterprises.E1.colour: unknown key" in msg
    assert "ladder.blue.1" in msg and "'janitor'" in msg
    assert "escalation.ack_timeout_s" in msg and "missing yellow, orange, red" in msg


def test_cross_references_are_checked():
    with pytest.raises(RoutingError, match=r"enterprises\.E1\.park: no office 'NOWHERE'"):
        parse_routing({"enterprises": {"E1": {"park": "NOWHERE"}}})


def test_yaml_syntax_errors_name_the_line(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("version: 1\ncity: [unclosed\n", encoding="utf-8")
    with pytest.raises(RoutingError, match=r"r.yaml: line \d+ not valid YAML"):
        load_routing(bad)
    with pytest.raises(RoutingError, match="routing file not found"):
        load_routing(tmp_path / "missing.yaml")


def test_the_example_routing_file_is_valid():
    cfg = load_routing(REPO / "examples" / "routing.yaml")
    assert cfg.escalation.ack_timeout_s[Colour.ORANGE] == 600
    assert main(["route", "check", str(REPO / "examples" / "routing.yaml")]) == 0


def test_route_test_prints_what_the_service_sends(service, capsys):
    args = [
        "route",
        "test",
        "--routing",
        str(DATA / "routing.yaml"),
        "--registry",
        str(DATA / "registry.csv"),
        "--enterprise",
        "E001",
        "--hazard",
        "H01",
        "--colour",
        "橙",
        "--json",
    ]
    assert main(args) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["district"] == "QJ-KFQ" and shown["routes_as"] == "orange"
    # the same alarm through the service: same recipients (plus the platform)
    notes = service.on_alarm(alarm(level="L2"), T0)
    sent = [(n.channel, n.recipient) for n in notes if n.channel != "platform"]
    assert sent == [(r["channel"], r["address"]) for r in shown["recipients"]]


def test_route_test_table_and_missing_roles(capsys):
    args = [
        "route",
        "test",
        "--routing",
        str(DATA / "routing.yaml"),
        "--registry",
        str(DATA / "registry.csv"),
        "--enterprise",
        "E002",
        "--colour",
        "red",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "钱操作" in out and "+8613900000009" in out
    assert "nobody holds the role technical" in out  # E002 has no 技术负责人


def test_route_test_errors_are_one_line(capsys):
    base = [
        "route",
        "test",
        "--routing",
        str(DATA / "routing.yaml"),
        "--registry",
        str(DATA / "registry.csv"),
    ]
    assert main([*base, "--enterprise", "E404", "--colour", "red"]) == 2
    assert "unknown enterprise 'E404'" in capsys.readouterr().err
    assert main([*base, "--enterprise", "E001", "--colour", "purple"]) == 2
    assert "is not a colour" in capsys.readouterr().err


def test_the_pipeline_order_reads_like_alertmanager(service):
    assert service.pipeline.names == ("inhibit", "filings", "shelve", "route", "dedup", "enqueue")
    assert Intent  # the stage input type is public for the runner and tests


def test_a_person_can_prefer_other_channels():
    cfg = parse_routing(
        {
            "channels": {"person": ["aliyun_sms"]},
            "enterprises": {
                "E": {
                    "operator": {
                        "name": "A",
                        "phone": "+8613900000001",
                        "openid": "oA",
                        "channels": ["tencent_sms", "wechat"],
                    },
                    "technical": {"name": "B", "phone": "+8613900000002"},
                }
            },
        }
    )
    got = [(r.channel, r.address) for r in route(cfg, RouteSubject("E", "", ""), Colour.YELLOW)]
    assert got == [
        ("tencent_sms", "+8613900000001"),
        ("wechat", "oA"),
        ("aliyun_sms", "+8613900000002"),
    ]
