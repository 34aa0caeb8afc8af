"""Bar charts as inline SVG, drawn on the server (no script, no CDN), each with its table.

A :class:`Chart` carries the SVG (``role="img"`` with a title and a description) and
the same numbers as a table (``headers``, ``rows``) for screen readers and for
anyone who prefers figures. Colours come from attributes, not ``style`` (the
dashboard's Content-Security-Policy forbids inline styles) and are the Okabe-Ito
palette, told apart by people with colour-blindness; the legend also names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

#: Okabe-Ito colours: one per series, in order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 16, 56


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    summary: str            # one sentence with the figures that matter
    svg: str                # inline SVG markup (safe: every text escaped)
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _nice_max(value: float) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def bar_svg(chart_id: str, title: str, summary: str, categories: list[str],
            series: list[tuple[str, list[float]]], *, unit: str = "") -> str:
    """Stacked bars: one per category, one colour per series, a y axis and a legend."""
    totals = [sum(values[i] for _, values in series) for i in range(len(categories))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'role="img" aria-labelledby="{chart_id}-t {chart_id}-d" class="chart">',
             f'<title id="{chart_id}-t">{escape(title)}</title>',
             f'<desc id="{chart_id}-d">{escape(summary)}</desc>']
    for tick in (0, top / 2, top):
        y = TOP + plot_h - plot_h * tick / top
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#bbbbbb" stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#333333">{tick:g}{escape(unit)}</text>')
    if not categories:
        parts.append(f'<text x="{WIDTH / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" '
                     'font-size="14" fill="#333333">No data in this period</text>')
    slot = plot_w / max(len(categories), 1)
    bar_w = max(2.0, min(48.0, slot * 0.7))
    for i, category in enumerate(categories):
        x = LEFT + slot * i + (slot - bar_w) / 2
        base = TOP + plot_h
        for n, (name, values) in enumerate(series):
            if not values[i]:
                continue
            h = plot_h * values[i] / top
            base -= h
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[n % len(PALETTE)]}">'
                         f'<title>{escape(category)}, {escape(name)}: {values[i]:g}'
                         f'{escape(unit)}</title></rect>')
        if len(categories) <= 24 or i % max(1, len(categories) // 12) == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{TOP + plot_h + 14}" '
                         f'text-anchor="middle" font-size="10" fill="#333333">'
                         f'{escape(category)}</text>')
    lx = LEFT
    for n, (name, _) in enumerate(series):
        parts.append(f'<rect x="{lx}" y="{HEIGHT - 22}" width="10" height="10" '
                     f'fill="{PALETTE[n % len(PALETTE)]}"/>')
        parts.append(f'<text x="{lx + 14}" y="{HEIGHT - 13}" font-size="11" fill="#333333">'
                     f'{escape(name)}</text>')
        lx += 22 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def stacked_chart(chart_id: str, title: str, summary: str, categories: list[str],
                  series: list[tuple[str, list[float]]], *, category_header: str,
                  unit: str = "") -> Chart:
    """A :class:`Chart` of stacked bars and its table (a row per category, a column per
    series, and the total)."""
    headers = (category_header, *(name for name, _ in series), "Total")
    rows = tuple((c, *(f"{values[i]:g}" for _, values in series),
                  f"{sum(values[i] for _, values in series):g}")
                 for i, c in enumerate(categories))
    return Chart(chart_id, title, summary,
                 bar_svg(chart_id, title, summary, categories, series, unit=unit), headers, rows)


def months_between(since_ms: int, until_ms: int) -> list[str]:
    """Every month (``YYYY-MM``, UTC) from since_ms up to until_ms, in order."""
    from hub.incidents.reports import month_of
    first, last = month_of(since_ms), month_of(max(since_ms, until_ms - 1))
    year, month = int(first[:4]), int(first[5:])
    out = []
    while (m := f"{year:04d}-{month:02d}") <= last:
        out.append(m)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def report_charts(site, incidents: list, drills: list, *, since_ms: int, until_ms: int,
                  now_ms: int) -> list[Chart]:
    """The reports page's charts: alarms per branch per month by kind (one per branch),
    time to first acknowledgement, drills per branch over the year to ``now_ms``."""
    from hub.incidents.reports import ACK_BINS_S, ack_figures, alarms_per_month, drills_per_branch
    charts = []
    months = months_between(since_ms, until_ms)
    per_month = alarms_per_month(incidents, {b.id: b.timezone for b in site.branches.values()})
    for branch in site.branches.values():
        counts = per_month.get(branch.id, {})
        kinds = sorted({k for c in counts.values() for k in c})
        series = [(site.kinds[k].label if k in site.kinds else k,
                   [counts.get(m, {}).get(k, 0) for m in months]) for k in kinds]
        total = sum(sum(v) for _, v in series)
        charts.append(stacked_chart(
            f"alarms-{branch.id}", f"Alarms per month at {branch.name}, by kind",
            f"{total} alarm{'s' if total != 1 else ''} at {branch.name} from {months[0]} to "
            f"{months[-1]} (drills not counted).", months, series, category_header="Month"))
    ack = ack_figures([i for i in incidents if not i.drill])
    labels = [f"≤ {ACK_BINS_S[0]} s"] + [f"{a}–{b} s" for a, b in zip(ACK_BINS_S, ACK_BINS_S[1:])] \
        + [f"> {ACK_BINS_S[-1]} s"]
    if ack.acknowledged:
        summary = (f"{ack.acknowledged} alarms acknowledged: {ack.within_30:.0%} within 30 s, "
                   f"{ack.within_60:.0%} within 60 s; {ack.never} closed without an "
                   "acknowledgement.")
    else:
        summary = f"No alarm acknowledged in this period; {ack.never} closed without one."
    charts.append(stacked_chart("ack", "Time to first acknowledgement", summary,
                                labels if ack.acknowledged else [],
                                [("Alarms", list(ack.bins))] if ack.acknowledged else [],
                                category_header="Time to acknowledge"))
    per_branch = drills_per_branch(site, drills, now_ms)
    names = [site.branches[b].name if b in site.branches else b for b in per_branch]
    charts.append(stacked_chart(
        "drills", "Drills per branch over the last year",
        "; ".join(f"{n}: {c} drill{'s' if c != 1 else ''}" for n, c in
                  zip(names, per_branch.values())) + " in the last 12 months.",
        names, [("Drills", list(per_branch.values()))], category_header="Branch"))
    return charts
