"""`hazardwatch report daily` on a simulated day in the real InfluxDB: the HTML and the PDF
carry real charts and the expected tables; the PDF pages are checked as images (pdftoppm)
and as text (pdftotext), both from Debian's poppler-utils."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from datetime import date

import numpy as np
import pytest
from PIL import Image

from dashboards.influx import Influx, InfluxConfig, create_database, drop_database
from dashboards.report_render import BAR_COLOURS
from hazardwatch.cli import main

# A UserWarning from influxdb_client means an ambiguous result (e.g. duplicate column names).
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("error::UserWarning")]

DAY = date(2026, 11, 28)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    from hazardwatch.sim.city import write_registry_csv
    from tests.conftest import INFLUXDB, LOCAL_ENV
    from tests.integration.test_dashboards_panels import replayed_day

    INFLUXDB.require()
    for tool in ("pdftoppm", "pdftotext"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install poppler-utils", pytrace=False)
    db = f"hw_report_{uuid.uuid4().hex[:10]}"
    base = InfluxConfig(LOCAL_ENV["HW_INFLUX__URL"], LOCAL_ENV["HW_INFLUX__TOKEN"], "-")
    create_database(base, db)
    cfg = InfluxConfig(base.url, base.token, "-", f"{db}/autogen")
    day, _ruleset = replayed_day(DAY)
    reg_path = tmp_path_factory.mktemp("reg") / "registry.csv"
    write_registry_csv(day.registry, reg_path)
    with Influx(cfg) as influx:
        influx.write(day.rows())
    yield cfg, day, reg_path
    drop_database(base, db)


#: The data colours of the charts on pages 1-3 (bars of warnings, alarms, online rate).
CHART_COLOURS = [
    [BAR_COLOURS[c] for c in ("red", "orange", "yellow", "blue")],
    [BAR_COLOURS["blue"]],
    ["#2ca02c", "#d62728"],
]


def ink(page: np.ndarray, colours: list[str], tol: int = 40) -> int:
    """Pixels of `page` (RGB) within `tol` of one of the chart's data colours."""
    hit = np.zeros(page.shape[:2], dtype=bool)
    for c in colours:
        rgb = np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)])
        hit |= np.abs(page - rgb).max(axis=2) <= tol
    return int(hit.sum())


def _pages(pdf, tmp_path) -> list[np.ndarray]:
    subprocess.run(
        ["pdftoppm", "-r", "100", "-png", str(pdf), str(tmp_path / "page")],
        check=True,
        capture_output=True,
    )
    return [
        np.asarray(Image.open(p).convert("RGB"), dtype=int)
        for p in sorted(tmp_path.glob("page*.png"))
    ]


def test_daily_report_cli_writes_html_and_pdf_with_charts_and_tables(
    filled, tmp_path, monkeypatch, capsys
):
    cfg, day, reg_path = filled
    monkeypatch.setenv("HW_INFLUX__URL", cfg.url)
    monkeypatch.setenv("HW_INFLUX__TOKEN", cfg.token)
    monkeypatch.setenv("HW_INFLUX__BUCKET", cfg.bucket)
    out = tmp_path / "out"
    rc = main(
        [
            "report",
            "daily",
            "--date",
            DAY.isoformat(),
            "--registry",
            str(reg_path),
            "--out",
            str(out),
            "--utc-offset",
            "0",  # the simulated day is a UTC day
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert cfg.token not in captured.out + captured.err
    pdf = out / f"daily-{DAY.isoformat()}.pdf"
    html = (out / f"daily-{DAY.isoformat()}.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 3
    for heading in (
        "Warnings by district and colour",
        "Top bad actors",
        "Online rate per enterprise",
        "Overdue dispositions",
    ):
        assert heading in html

    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    for expected in (
        "Warnings by district and colour",
        "Top bad actors",
        "Online rate per enterprise",
        "Overdue dispositions",
        "值班日报",
    ):
        assert expected in text, expected
    # The warnings table: per district, warnings of the day at their highest colour.
    districts = {p.enterprise_code: p.district for p in day.registry}
    top = {}
    for w in day.warnings:
        if day.start_ms <= w.ts_ms < day.end_ms and w.state != "closed":
            top[w.warning_id] = max(top.get(w.warning_id, 0), w.colour.rank)
    by_district = {}
    for w in day.warnings:
        if w.warning_id in top:
            by_district.setdefault(districts[w.enterprise_code], {})[w.warning_id] = top[
                w.warning_id
            ]
    for district in sorted(set(districts.values())):
        ranks = list(by_district.get(district, {}).values())
        cells = [str(ranks.count(r)) for r in (4, 3, 2, 1)] + [str(len(ranks))]
        rows = [ln.split() for ln in text.splitlines() if ln.strip().startswith(district)]
        assert [district, *cells] in rows, (district, cells)  # CJK names survive too
    # The chattering/flood point is the top bad actor; the overdue warning is listed.
    firing = [a for a in day.alarms if a.state == "firing"]
    top = max(
        {f"{a.enterprise_code}/{a.tag}" for a in firing},
        key=lambda k: sum(1 for a in firing if f"{a.enterprise_code}/{a.tag}" == k),
    )
    assert top in text
    overdue = [h for h in day.handling if h.event == "overdue"]
    assert overdue and overdue[0].warning_id in text
    # Online rate per enterprise as the day's online rows give it (the gateway outage dips).
    acc = {}
    for r in day.other:
        if r.measurement == "online":
            on, n = acc.get(r.tags["enterprise"], (0, 0))
            acc[r.tags["enterprise"]] = (on + r.fields["online"], n + r.fields["points"])
    rates = {e: f"{100 * on / n:.2f}" for e, (on, n) in acc.items()}
    assert min(float(v) for v in rates.values()) < 99.5
    for ent, rate in rates.items():
        assert any(ent in line and rate in line for line in text.splitlines()), (ent, rate)

    pages = _pages(pdf, tmp_path)
    assert len(pages) >= 4
    # Charts drawn from data: far more data-coloured pixels than the same chart for an empty
    # day (legend swatches only: measured 616, 0 and 0 px at 100 dpi).
    for i, (colours, least) in enumerate(zip(CHART_COLOURS, (5000, 500, 5000), strict=True)):
        assert ink(pages[i], colours) > least, f"page {i + 1}: chart has no data drawn"
        assert pages[i].std() > 20, f"page {i + 1} is blank"


def test_collect_takes_overdue_and_handling_times_from_the_alert_store(filled, tmp_path):
    """With `--db`, overdue dispositions and times to acknowledge/dispose come from what the
    alerts stage recorded; a district narrows the report."""
    from alerts.lifecycle import Phase, WarningRecord
    from alerts.model import Disposition
    from alerts.store import AlertStore
    from dashboards.report import collect, day_range
    from rules.model import Colour

    cfg, day, _ = filled
    start, _end = day_range(DAY, 0)
    district = sorted({p.district for p in day.registry})[0]
    ent = next(p for p in day.registry if p.district == district)

    def rec(wid, phase, raised, **kw):
        return WarningRecord(
            warning_id=wid,
            enterprise_code=ent.enterprise_code,
            district=district,
            hazard_code=ent.hazard_code,
            colour=Colour.ORANGE,
            previous=None,
            reason="test",
            alarm_ids=(),
            phase=phase,
            raised_ms=raised,
            updated_ms=raised,
            event_ts_ms=raised,
            **kw,
        )

    store = AlertStore(tmp_path / "alerts.db")
    try:
        store.put_warning(rec("w-overdue", Phase.CLEARED, start - 30 * 3_600_000, overdue=True))
        store.put_warning(
            rec(
                "w-done",
                Phase.CLOSED,
                start + 3_600_000,
                acked_ms=start + 3_600_000 + 600_000,
                closed_ms=start + 3 * 3_600_000,
                disposition=Disposition.PROCESS_FLUCTUATION,
            )
        )
        with Influx(cfg) as influx:
            rep = collect(influx, day.registry, DAY, district=district, store=store, utc_offset_h=0)
    finally:
        store.close()
    assert [o.warning_id for o in rep.overdue] == ["w-overdue"]
    assert rep.overdue[0].open_hours == 54.0  # raised 30 h before the day, to its end
    assert rep.mean_ack_s == 600.0 and rep.mean_dispose_s == 7200.0
    assert list(rep.warnings_by_district) == [district]
    assert {o.district for o in rep.online} == {district}
    assert any("alert store" in s for s in rep.sources)


def test_a_day_without_data_still_renders_a_report(filled, tmp_path, monkeypatch, capsys):
    cfg, day, reg_path = filled
    monkeypatch.setenv("HW_INFLUX__URL", cfg.url)
    monkeypatch.setenv("HW_INFLUX__TOKEN", cfg.token)
    monkeypatch.setenv("HW_INFLUX__BUCKET", cfg.bucket)
    district = sorted({p.district for p in day.registry})[0]
    rc = main(
        [
            "report",
            "daily",
            "--date",
            "2026-11-20",
            "--registry",
            str(reg_path),
            "--out",
            str(tmp_path),
            "--district",
            district,
        ]
    )
    assert rc == 0, capsys.readouterr().err
    pdf = tmp_path / f"daily-2026-11-20-{district}.pdf"
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{district} — 2026-11-20 (UTC+8)" in text
    assert "Alarms raised 报警: 0" in text
    assert text.count("None 无") == 3  # bad actors, online rate, overdue dispositions
