"""Schemathesis against the API's own OpenAPI spec: generated requests (valid and invalid,
with an admin token and with an enterprise token) never get a server error, and every answer
matches the documented status codes, content types and response schemas."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .test_api_fixtures import ADMIN, E001, build_world

_DIR = Path(
    tempfile.mkdtemp(prefix="hw-api-fuzz-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
)
WORLD = build_world(_DIR / "alerts.sqlite")
APP = WORLD.app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
CLIENT = TestClient(APP, raise_server_exceptions=False)  # a 500 must show as a 500
_HTTPX_KEYS = {"method", "url", "params", "headers", "json", "content", "data", "files"}

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    WORLD.store.close()
    shutil.rmtree(_DIR, ignore_errors=True)


@pytest.mark.parametrize("token", [ADMIN, E001], ids=["admin", "enterprise"])
@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_no_server_error_and_answers_match_the_spec(case, token):
    # Sent through Starlette's (httpx) test client rather than `case.call()`: schemathesis's
    # requests transport breaks on the urllib3-future that another dependency installs.
    headers = {"Authorization": token}
    kw = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    if isinstance(kw.get("data"), bytes | str):
        kw["content"] = kw.pop("data")
    kw.pop("cookies", None)
    resp = CLIENT.request(**{k: v for k, v in kw.items() if k in _HTTPX_KEYS})
    case.validate_response(resp, checks=CHECKS, headers=headers)
