"""Renders a `DailyReport` as HTML (charts inlined as PNG) and as an A4 PDF (matplotlib,
Agg backend, PdfPages), with a CJK-capable font so district and enterprise names print.

Writes files; takes no data from anywhere but the report value.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from dashboards.report import COLOURS, DailyReport
from rules.kpi import KpiConfig

#: Fonts tried in order; Noto Sans CJK (Debian `fonts-noto-cjk`) has the Chinese glyphs.
FONTS = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "Droid Sans Fallback", "DejaVu Sans"]
BAR_COLOURS = {"red": "#d62728", "orange": "#ff7f0e", "yellow": "#e5c100", "blue": "#1f77b4"}
COLOUR_ZH = {"red": "红", "orange": "橙", "yellow": "黄", "blue": "蓝"}
A4 = (8.27, 11.69)
ROWS_PER_PAGE = 28


class ReportError(Exception):
    """The report cannot be rendered (names the file or the missing font)."""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    available = {f.name for f in font_manager.fontManager.ttflist}
    if not any(f in available for f in FONTS[:-1]):
        raise ReportError(
            "no font with Chinese glyphs found (tried " + ", ".join(FONTS[:-1]) + "); "
            "install Debian's fonts-noto-cjk"
        )
    plt.rcParams["font.family"] = [f for f in FONTS if f in available]
    plt.rcParams["pdf.fonttype"] = 42  # embed real fonts so the text stays searchable
    plt.rcParams["axes.unicode_minus"] = False
    return plt


# -- charts ----------------------------------------------------------------------------------


def chart_warnings(plt, rep: DailyReport):
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    districts = list(rep.warnings_by_district)
    bottom = [0] * len(districts)
    for c in reversed(COLOURS):  # blue at the bottom, red on top
        vals = [rep.warnings_by_district[d][c] for d in districts]
        ax.bar(districts, vals, bottom=bottom, color=BAR_COLOURS[c], label=f"{COLOUR_ZH[c]} {c}")
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_title("预警 Warnings by district and highest colour of the day")
    ax.set_ylabel("warnings")
    ax.legend(fontsize=8)
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def chart_per_10min(plt, rep: DailyReport):
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    hours = [i / 6 for i in range(len(rep.per_10min))]
    ax.bar(hours, rep.per_10min, width=1 / 6, align="edge", color=BAR_COLOURS["blue"])
    flood = KpiConfig().flood_start
    ax.axhline(
        flood, color="#d62728", linestyle="--", linewidth=1, label=f"flood (> {flood} per 10 min)"
    )
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xlabel(f"hour ({rep.tz_label})")
    ax.set_ylabel("alarms")
    ax.set_title("报警 Alarms per 10 minutes (ISA-18.2)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def chart_online(plt, rep: DailyReport):
    rows = rep.online or []
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.35 * len(rows) + 1.2)))
    labels = [f"{r.enterprise_name} ({r.enterprise_code})" for r in rows]
    vals = [r.rate * 100 for r in rows]
    ax.barh(labels, vals, color=["#2ca02c" if v >= 99.5 else "#d62728" for v in vals])
    ax.axvline(99.5, color="#333333", linestyle="--", linewidth=1, label="target 99.5 %")
    ax.set_xlim(min([90.0, *vals]) - 1 if vals else 90, 100.5)
    ax.set_xlabel("online rate %")
    ax.set_title("在线率 Online rate per enterprise")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    fig.tight_layout()
    return fig


# -- tables ----------------------------------------------------------------------------------


def table_warnings(rep: DailyReport) -> tuple[list[str], list[list[str]]]:
    head = ["district", *(f"{COLOUR_ZH[c]} {c}" for c in COLOURS), "total"]
    rows = [
        [d, *(str(v[c]) for c in COLOURS), str(sum(v.values()))]
        for d, v in rep.warnings_by_district.items()
    ]
    return head, rows


def table_overdue(rep: DailyReport) -> tuple[list[str], list[list[str]]]:
    head = ["warning", "enterprise", "district", "installation", "colour", "open h"]
    rows = [
        [
            o.warning_id,
            f"{o.enterprise_name} {o.enterprise_code}".strip(),
            o.district,
            o.hazard_code or "-",
            f"{COLOUR_ZH.get(o.colour, '')} {o.colour}",
            f"{o.open_hours:.1f}",
        ]
        for o in rep.overdue
    ]
    return head, rows


def table_online(rep: DailyReport) -> tuple[list[str], list[list[str]]]:
    head = ["enterprise", "name", "district", "online %"]
    rows = [
        [r.enterprise_code, r.enterprise_name, r.district, f"{r.rate * 100:.2f}"]
        for r in rep.online
    ]
    return head, rows


def table_bad_actors(rep: DailyReport) -> tuple[list[str], list[list[str]]]:
    head = ["point", "enterprise", "kind", "alarms", "share %"]
    rows = [
        [b.point, b.enterprise_name, b.kind, str(b.alarms), f"{b.share_pct:.1f}"]
        for b in rep.bad_actors
    ]
    return head, rows


def _summary(rep: DailyReport) -> list[str]:
    f = rep.figures

    def mins(s: float | None) -> str:
        return "-" if s is None else f"{s / 60:.1f} min"

    return [
        f"Alarms raised 报警: {int(f['annunciations'])}   episodes: {int(f['episodes'])}   "
        f"peak per 10 min: {int(f['peak_per_10min'])}   flood episodes: "
        f"{int(f['flood_episodes'])}   chattering sources: {int(f['chattering_sources'])}",
        f"Warnings raised 预警: {sum(sum(v.values()) for v in rep.warnings_by_district.values())}"
        f"   overdue dispositions 逾期未处置: {len(rep.overdue)}",
        f"Mean time to acknowledge: {mins(rep.mean_ack_s)}   "
        f"mean time to dispose: {mins(rep.mean_dispose_s)}",
        "Sources: " + "; ".join(rep.sources),
    ]


# -- PDF -------------------------------------------------------------------------------------


def _table_page(
    plt, pdf, title: str, head: Sequence[str], rows: list[list[str]], chart: bytes | None = None
) -> None:
    """One or more A4 pages: optional chart on top, then the table (continued if long)."""
    chunks = [rows[i : i + ROWS_PER_PAGE] for i in range(0, len(rows), ROWS_PER_PAGE)] or [[]]
    for n, chunk in enumerate(chunks):
        fig = plt.figure(figsize=A4)
        top = 0.95
        if chart is not None and n == 0:
            ax_img = fig.add_axes((0.05, 0.52, 0.9, 0.43))
            ax_img.imshow(plt.imread(io.BytesIO(chart)))
            ax_img.axis("off")
            top = 0.5
        suffix = f" (continued {n + 1}/{len(chunks)})" if len(chunks) > 1 else ""
        fig.text(0.06, top, title + suffix, fontsize=13)
        ax = fig.add_axes((0.06, 0.04, 0.88, top - 0.06))
        ax.axis("off")
        if chunk:
            t = ax.table(
                cellText=chunk,
                colLabels=list(head),
                loc="upper center",
                cellLoc="left",
                colLoc="left",
            )
            t.auto_set_font_size(False)
            t.set_fontsize(8)
            t.auto_set_column_width(list(range(len(head))))
            t.scale(1, 1.3)
        else:
            ax.text(0, 0.95, "None 无", fontsize=11, va="top")
        pdf.savefig(fig)
        plt.close(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def charts(rep: DailyReport) -> dict[str, bytes]:
    """The report's charts as PNG, drawn once for both the HTML and the PDF."""
    plt = _plt()
    return {
        "warnings": _png(chart_warnings(plt, rep)),
        "per_10min": _png(chart_per_10min(plt, rep)),
        "online": _png(chart_online(plt, rep)),
    }


def render_pdf(rep: DailyReport, path: Path, pngs: dict[str, bytes] | None = None) -> Path:
    plt = _plt()
    pngs = pngs or charts(rep)
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path, metadata={"Title": rep.title, "Creator": "hazardwatch"}) as pdf:
        fig = plt.figure(figsize=A4)
        fig.text(0.06, 0.95, rep.title, fontsize=14)
        for i, line in enumerate(_summary(rep)):
            fig.text(0.06, 0.91 - i * 0.022, line, fontsize=8, wrap=True)
        ax_img = fig.add_axes((0.05, 0.42, 0.9, 0.38))
        ax_img.imshow(plt.imread(io.BytesIO(pngs["warnings"])))
        ax_img.axis("off")
        head, rows = table_warnings(rep)
        fig.text(0.06, 0.39, "Warnings by district and colour", fontsize=12)
        ax = fig.add_axes((0.06, 0.04, 0.88, 0.33))
        ax.axis("off")
        t = ax.table(
            cellText=rows or [["-"] * len(head)],
            colLabels=head,
            loc="upper center",
            cellLoc="left",
            colLoc="left",
        )
        t.auto_set_font_size(False)
        t.set_fontsize(9)
        t.auto_set_column_width(list(range(len(head))))
        t.scale(1, 1.4)
        pdf.savefig(fig)
        plt.close(fig)
        _table_page(plt, pdf, "Top bad actors", *table_bad_actors(rep), chart=pngs["per_10min"])
        _table_page(
            plt, pdf, "Online rate per enterprise", *table_online(rep), chart=pngs["online"]
        )
        _table_page(plt, pdf, "Overdue dispositions", *table_overdue(rep))
    return path


# -- HTML ------------------------------------------------------------------------------------


def _html_table(head: Sequence[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p>None 无</p>"
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return (
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}">'
    )


def render_html(rep: DailyReport, path: Path, pngs: dict[str, bytes] | None = None) -> Path:
    pngs = pngs or charts(rep)
    sections = [
        ("Warnings by district and colour", pngs["warnings"], table_warnings(rep)),
        ("Alarms per 10 minutes", pngs["per_10min"], None),
        ("Top bad actors", None, table_bad_actors(rep)),
        ("Online rate per enterprise", pngs["online"], table_online(rep)),
        ("Overdue dispositions", None, table_overdue(rep)),
    ]
    parts = [
        "<!doctype html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{html.escape(rep.title)}</title>",
        "<style>body{font-family:'Noto Sans CJK SC',sans-serif;margin:2em;max-width:60em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;"
        "padding:2px 8px;text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(rep.title)}</h1>",
        *(f"<p>{html.escape(s)}</p>" for s in _summary(rep)),
    ]
    for title, chart, tab in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if chart is not None:
            parts.append(_img(chart, title))
        if tab is not None:
            parts.append(_html_table(*tab))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def render(rep: DailyReport, out_dir: Path) -> tuple[Path, Path]:
    """Write `daily-<date>[-<district>].html` and `.pdf` into `out_dir`."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {out_dir}: {exc.strerror}") from None
    stem = f"daily-{rep.day.isoformat()}" + (f"-{rep.district}" if rep.district else "")
    pngs = charts(rep)
    return (
        render_html(rep, out_dir / f"{stem}.html", pngs),
        render_pdf(rep, out_dir / f"{stem}.pdf", pngs),
    )
