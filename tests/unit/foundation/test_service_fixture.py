"""An integration test whose service is down fails (never skips), naming the service."""

from __future__ import annotations

import pytest

from tests.conftest import Service


def test_missing_service_fails_with_its_name():
    with pytest.raises(
        pytest.fail.Exception, match=r"kafka is not reachable at 127\.0\.0\.1:1 .*services up kafka"
    ):
        Service("kafka", "127.0.0.1", 1).require()
