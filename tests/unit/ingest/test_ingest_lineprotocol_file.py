"""The line-protocol file writer writes every line once, UTF-8, in order, and starts a new
file at the same places whatever the batching: before a line when the current file has
reached `max_file_bytes` (counted in encoded bytes, header included)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.influx import LineProtocolFileWriter

HEADER = LineProtocolFileWriter.HEADER.encode("utf-8")


def expected_files(lines: list[str], max_bytes: int) -> list[bytes]:
    """The rotation rule spelled out one line at a time (what the writer did before it
    encoded whole batches)."""
    files: list[bytearray] = []
    for line in lines:
        if not files or len(files[-1]) >= max_bytes:
            files.append(bytearray(HEADER))
        files[-1] += (line + "\n").encode("utf-8")
    return [bytes(f) for f in files]


def written_files(tmp_path, batches: list[list[str]], max_bytes: int) -> list[bytes]:
    w = LineProtocolFileWriter(tmp_path, max_file_bytes=max_bytes, clock=lambda: 1795910400.0)
    for b in batches:
        w.write_lines(b)
    stats = w.stats()
    w.close()
    files = sorted((tmp_path / "lineprotocol").glob("*.lp"))
    assert stats["files"] == len(files)
    assert stats["written"] == sum(len(b) for b in batches)
    assert stats["bytes"] == sum(f.stat().st_size for f in files) - len(files) * len(HEADER)
    return [f.read_bytes() for f in files]


def test_batches_are_written_once_in_order_as_utf8(tmp_path):
    lines = [
        f"reading,district=潜江,enterprise=B{i:03d},tag=AT-{i} value={i / 10!r},quality=0i,"
        f"backfill=false {1_796_000_000_000 + i}"
        for i in range(250)
    ]
    got = written_files(tmp_path, [lines[:100], lines[100:101], [], lines[101:]], 64 << 20)
    assert got == [HEADER + "".join(ln + "\n" for ln in lines).encode("utf-8")]
    assert got == expected_files(lines, 64 << 20)


def test_a_generator_of_lines_is_written_like_a_list(tmp_path):
    w = LineProtocolFileWriter(tmp_path, clock=lambda: 1795910400.0)
    w.write_lines(f"m,t=区{i} v={i}i {i}" for i in range(3))
    w.close()
    (f,) = (tmp_path / "lineprotocol").glob("*.lp")
    assert f.read_text("utf-8") == LineProtocolFileWriter.HEADER + "".join(
        f"m,t=区{i} v={i}i {i}\n" for i in range(3)
    )


def test_rotation_splits_a_batch_where_the_limit_is_reached(tmp_path):
    # After the header and one 60-byte line a file is still under the limit, after two it
    # has reached it: two lines a file, and the batch of five is split across three files.
    lines = [f"m,district=潜江 v={i}i {i:0>36}" for i in range(5)]
    assert all(len((ln + "\n").encode()) == 60 for ln in lines)
    limit = len(HEADER) + 60 + 1
    got = written_files(tmp_path, [lines], limit)
    assert [f.count(b"\n") - 1 for f in got] == [2, 2, 1]
    assert got == expected_files(lines, limit)


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=40
        ),
        max_size=60,
    ),
    cuts=st.lists(st.integers(0, 60), max_size=8),
    max_bytes=st.integers(1, 600),
)
def test_any_batching_gives_the_files_of_one_line_at_a_time(
    tmp_path_factory, lines, cuts, max_bytes
):
    tmp = tmp_path_factory.mktemp("lp")
    bounds = sorted({0, len(lines), *(c for c in cuts if c <= len(lines))})
    batches = [lines[a:b] for a, b in itertools.pairwise(bounds)]
    assert written_files(tmp, batches, max_bytes) == expected_files(lines, max_bytes)


@pytest.mark.parametrize("batch", [["m v=1i 1"], []])
def test_closed_writer_refuses_lines(tmp_path, batch):
    w = LineProtocolFileWriter(tmp_path)
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.write_lines(batch)


@pytest.mark.parametrize("slack", [-1, 0, 1])
def test_a_batch_ending_at_the_limit_rotates_exactly_as_line_by_line(tmp_path, slack):
    # The file is open with the header and one line; the next batch of three brings it to
    # `limit + slack` bytes before its last line: at 0 or more that line opens a new file.
    lines = [f"m,district=潜江 v={i}i {i:0>36}" for i in range(4)]
    limit = len(HEADER) + 3 * 60 - slack
    got = written_files(tmp_path, [lines[:1], lines[1:]], limit)
    assert [f.count(b"\n") - 1 for f in got] == ([4] if slack < 0 else [3, 1])
    assert got == expected_files(lines, limit)
