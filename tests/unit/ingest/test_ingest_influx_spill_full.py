"""The InfluxDB writer on a really full spill disk (a tmpfs filled to ENOSPC by
tests/faults/env.py `full_disk`) with an InfluxDB that is down: nothing crashes, nothing is
lost while it fits in memory, and what is dropped is counted and logged."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from tests.faults.env import FaultSetupError, full_disk


def _mounted(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0


# ------------------------------------------------------------------------ the primitive


def test_full_disk_answers_enospc_then_recovers_and_unmounts(tmp_path: Path) -> None:
    d = tmp_path / "spill"
    with full_disk(d, 256 * 1024) as disk:
        assert _mounted(d)
        assert os.fspath(disk) == str(d)
        assert disk.free_bytes() == 0
        (d / "empty").touch()  # inodes are left: a file can be created, not written
        with pytest.raises(OSError) as exc:
            (d / "x.tmp").write_bytes(b"a" * 10)
        assert exc.value.errno == errno.ENOSPC
        disk.free(64 * 1024)
        (d / "y").write_bytes(b"b" * 4096)
        disk.refill()
        assert disk.free_bytes() == 0
    assert not _mounted(d)
    assert list(d.iterdir()) == []  # the tmpfs and all it held are gone


def test_full_disk_unmounts_on_error_and_with_a_file_still_open(tmp_path: Path) -> None:
    d = tmp_path / "spill"
    with pytest.raises(KeyError), full_disk(d) as disk:
        disk.free(8192)
        held = open(d / "held", "wb")  # still open at unmount: umount -l detaches it
        raise KeyError("boom")
    held.close()
    assert not _mounted(d)


def test_full_disk_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "spill-000000000001.lp").write_text("m v=1 1\n")
    with pytest.raises(FaultSetupError, match="not empty"), full_disk(tmp_path):
        pass
    assert not _mounted(tmp_path)
