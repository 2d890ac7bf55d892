"""deploy/compose.yaml stays true to the code: its settings load, its commands exist, its
mounted files are in the repository. (No Docker engine runs here, so this is what can be
checked without one.)"""

from __future__ import annotations

import yaml

from hazardwatch.cli import app
from hazardwatch.settings import load_settings
from tests.conftest import REPO

COMPOSE = REPO / "deploy" / "compose.yaml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _hazardwatch_services(c: dict) -> dict[str, dict]:
    return {n: s for n, s in c["services"].items() if s.get("image") == "hazardwatch:local"}


def test_hazardwatch_services_settings_are_valid(clean_env):
    c = _compose()
    services = _hazardwatch_services(c)
    assert {"bridge", "worker"} <= set(services)
    example = {}
    for line in (REPO / "deploy/compose.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            example[k] = v
    for name, svc in services.items():
        env = {k: str(v) for k, v in svc["environment"].items()}
        env.update({k: v for k, v in example.items() if k.startswith("HW_")})
        s = load_settings(environ=env)  # raises on any unknown or invalid key
        assert s.effective_mode == "distributed", name
        assert s.kafka.bootstrap_servers == "kafka:9092"


def test_commands_exist_in_the_cli():
    import typer.main

    group = typer.main.get_command(app)
    for name, svc in _hazardwatch_services(_compose()).items():
        cmd = svc["command"]
        assert cmd[0] == "hazardwatch"
        assert cmd[1] in group.commands, f"compose service {name} runs unknown command {cmd[1]}"


def test_mounted_files_exist():
    c = _compose()
    for name, svc in c["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                path = (COMPOSE.parent / src).resolve()
                # Made by the user, never committed: the broker password file
                # (deploy/mosquitto/README.md), the site config folder, and the output of
                # `hazardwatch dashboards build --out deploy/grafana/dashboards`.
                generated = {"passwd", "config", "dashboards"}
                if path.name in generated:
                    continue
                assert path.exists(), f"{name} mounts {src}, which is not in the repository"
    assert (REPO / "deploy/Dockerfile").is_file()


def test_dockerfile_copies_every_package():
    import tomllib

    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    dockerfile = (REPO / "deploy/Dockerfile").read_text()
    for top in {p.split(".")[0] for p in packages}:
        assert f"COPY {top} ./{top}" in dockerfile, f"Dockerfile does not copy package {top}"


def test_kafka_image_matches_local_kafka_version():
    pom = (REPO / "deploy/local/kafka/pom.xml").read_text()
    image = _compose()["services"]["kafka"]["image"]
    version = image.split(":")[1]
    assert f"<kafka.version>{version}</kafka.version>" in pom
