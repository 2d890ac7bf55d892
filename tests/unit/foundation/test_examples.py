"""The README's "running it for real" files stay valid together: the example registry, rule
folder and routing file load, lint clean, and route every enterprise."""

from __future__ import annotations

from hazardwatch.cli import main
from tests.conftest import REPO

EX = REPO / "examples"


def test_example_registry_and_rules_check_clean(capsys, clean_env):
    assert main(["registry", "check", str(EX / "rules/registry.csv")]) == 0
    assert (
        main(
            [
                "rules",
                "check",
                "--registry",
                str(EX / "rules/registry.csv"),
                "--rules",
                str(EX / "rules"),
            ]
        )
        == 0
    )
    assert "rules OK" in capsys.readouterr().out


def test_example_routing_covers_the_example_registry(capsys, clean_env):
    rc = main(
        ["route", "check", str(EX / "routing.yaml"), "--registry", str(EX / "rules/registry.csv")]
    )
    out = capsys.readouterr()
    assert rc == 0
    assert "warning" not in (out.out + out.err), out.out + out.err
