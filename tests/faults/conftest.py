"""Fixtures of the fault suite: one private service stack and one distributed deployment for
the whole session (each case brings its own enterprises), and the ledger table printed at
the end of the run (also written to faults-ledger.txt under pytest's temporary folder)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.faults.deployment import Deployment
from tests.faults.ledger import RESULTS, table
from tests.faults.stack import PrivateStack

SID = uuid.uuid4().hex[:4].upper()
CASES_MAX = 16  # enterprises are registered up front for this many cases
ENTERPRISES_PER_CASE = 6  # enough that both workers own some


def case_enterprises(index: int) -> list[str]:
    return [f"F{SID}{index:02d}{c}" for c in "ABCDEF"[:ENTERPRISES_PER_CASE]]


@pytest.fixture(scope="session")
def faults_stack():
    # HW_FAULTS_STACK_DIR reuses (and keeps) an instance while iterating on the suite.
    folder = os.environ.get("HW_FAULTS_STACK_DIR")
    stack = PrivateStack(Path(folder) if folder else None).up()
    yield stack
    stack.down()


@pytest.fixture(scope="session")
def faults_deployment(faults_stack, tmp_path_factory):
    ents = [e for i in range(CASES_MAX) for e in case_enterprises(i)]
    dep = Deployment(faults_stack, tmp_path_factory.mktemp("faults"), ents, SID.lower())
    try:
        dep.start()
        yield dep
    finally:
        dep.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    text = table(RESULTS)
    terminalreporter.section("fault suite ledger")
    terminalreporter.write_line(text)
    try:
        base = config._tmp_path_factory.getbasetemp()
        (Path(base) / "faults-ledger.txt").write_text(text + "\n", encoding="utf-8")
    except (AttributeError, OSError):
        pass
