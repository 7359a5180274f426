"""Server-rendered SVG charts for the usage pages (no JavaScript, no chart library).

`tokens_per_day_svg` draws one stacked bar per day (prompt below, completion above)
with a y axis of round numbers, day labels, a legend, a `<title>` tooltip per bar,
and `role="img"` with an `aria-label` summary for screen readers. `narrow=True` draws it
for a phone (half the width, the legend on a line of its own, fewer day labels), so its
text stays readable instead of shrinking to a few pixels; the page shows one or the other.
Colours of text, gridlines and axes come from the page's stylesheet (light and dark).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

from django.utils import dateformat, formats
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from conversations.shared.numbers import grouped

WIDTH, HEIGHT = 760, 300
NARROW_WIDTH, NARROW_HEIGHT = 360, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 44, 44
NARROW_LEFT, NARROW_TOP = 48, 64
PROMPT_COLOUR, COMPLETION_COLOUR = "#4c78a8", "#f58518"  # readable with colour blindness
MAX_X_LABELS, NARROW_X_LABELS = 12, 6


def nice_step(top: int, ticks: int = 5) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving about `ticks` gridlines."""
    if top <= 0:
        return 1
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return max(1, int(factor * power))
    return int(10 * power)


def compact(number: int) -> str:
    """1234 -> 1.2k, 3400000 -> 3.4M: short axis labels."""
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(number) >= size:
            text = f"{number / size:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return str(number)


def _day_label(day: date, span: int) -> str:
    # Short ranges read best as day numbers; longer ones need the month, in the
    # language's own order ("Jun 2", "6月2日"): the format is translated.
    if span <= 31:
        return dateformat.format(day, "j")
    return dateformat.format(day, pgettext("date format of a chart's day label", "M j"))


def _day(day: date) -> str:
    """A day as the active language writes dates ("June 2, 2025", "2025年6月2日")."""
    return formats.date_format(day, "DATE_FORMAT")


def tokens_per_day_svg(
    days: Sequence[dict], *, title: str | None = None, narrow: bool = False
) -> SafeString:
    """A stacked bar chart of `days` (rows with day, prompt_tokens, completion_tokens,
    total_tokens, requests), oldest first."""
    chart = _Chart(days, narrow=narrow)
    title = title or _("Tokens per day")
    summary = chart.summary(title)
    parts = [*chart.grid(), *chart.bars(), *chart.empty_note(), chart.axes(), chart.legend()]
    return format_html(
        '<svg class="usage-chart{}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" '
        'role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="12">'
        '<title>{}</title><text x="{}" y="20" class="chart-title" font-size="15" '
        'font-weight="600">{}</text>{}</svg>',
        " usage-chart-narrow" if narrow else " usage-chart-wide",
        chart.width,
        chart.height,
        summary,
        summary,
        chart.left,
        title,
        mark_safe("".join(parts)),  # noqa: S308 - every part was built with format_html
    )


def _tokens(row: dict) -> int:
    return row["prompt_tokens"] + row["completion_tokens"]


class _Chart:
    """The geometry of one chart, and its parts as SVG, each made with format_html."""

    def __init__(self, days: Sequence[dict], *, narrow: bool = False) -> None:
        self.days = days
        self.narrow = narrow
        self.width, self.height = (NARROW_WIDTH, NARROW_HEIGHT) if narrow else (WIDTH, HEIGHT)
        self.left, self.top_edge = (NARROW_LEFT, NARROW_TOP) if narrow else (LEFT, TOP)
        self.labels = NARROW_X_LABELS if narrow else MAX_X_LABELS
        self.plot_w = self.width - self.left - RIGHT
        self.plot_h = self.height - self.top_edge - BOTTOM
        self.count = max(len(days), 1)
        self.highest = max((_tokens(row) for row in days), default=0)
        self.step = nice_step(self.highest)
        self.top = max(self.step * math.ceil(self.highest / self.step), self.step)
        self.slot = self.plot_w / self.count
        self.bar_w = max(1.0, self.slot * 0.7)

    def y(self, value: int) -> float:
        return self.top_edge + self.plot_h - self.plot_h * value / self.top

    def grid(self) -> list[str]:
        """Gridlines and y labels."""
        return [
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#d9d9d9"/>'
                '<text x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>',
                self.left,
                self.left + self.plot_w,
                f"{self.y(value):.1f}",
                f"{self.y(value):.1f}",
                self.left - 6,
                f"{self.y(value):.1f}",
                compact(value),
            )
            for value in range(0, self.top + 1, self.step)
        ]

    def bars(self) -> list[str]:
        """A bar per day, each with a tooltip; a day label every few bars."""
        parts = []
        every = max(1, math.ceil(self.count / self.labels))
        span = (self.days[-1]["day"] - self.days[0]["day"]).days + 1 if self.days else 0
        for i, row in enumerate(self.days):
            x = self.left + self.slot * i + (self.slot - self.bar_w) / 2
            parts.append(self.bar(row, x))
            if i % every == 0:
                parts.append(
                    format_html(
                        '<text x="{}" y="{}" text-anchor="middle">{}</text>',
                        f"{x + self.bar_w / 2:.1f}",
                        self.top_edge + self.plot_h + 16,
                        _day_label(row["day"], span),
                    )
                )
        return parts

    def bar(self, row: dict, x: float) -> str:
        prompt, completion = row["prompt_tokens"], row["completion_tokens"]
        tip = _(
            "%(day)s: %(total)s tokens (%(prompt)s prompt, %(completion)s completion), "
            "%(requests)s requests"
        ) % {
            "day": _day(row["day"]),
            "total": grouped(row["total_tokens"]),
            "prompt": grouped(prompt),
            "completion": grouped(completion),
            "requests": grouped(row["requests"]),
        }
        y = self.y
        return format_html(
            '<g class="bar"><title>{}</title>'
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/></g>',
            tip,
            f"{x:.1f}",
            f"{y(prompt):.1f}",
            f"{self.bar_w:.1f}",
            f"{y(0) - y(prompt):.1f}",
            PROMPT_COLOUR,
            f"{x:.1f}",
            f"{y(prompt + completion):.1f}",
            f"{self.bar_w:.1f}",
            f"{y(prompt) - y(prompt + completion):.1f}",
            COMPLETION_COLOUR,
        )

    def empty_note(self) -> list[str]:
        if self.highest:
            return []
        return [
            format_html(
                '<text x="{}" y="{}" text-anchor="middle" class="empty">{}</text>',
                self.left + self.plot_w / 2,
                self.top_edge + self.plot_h / 2,
                _("No tokens used in this range"),
            )
        ]

    def axes(self) -> str:
        """Axes and their titles."""
        return format_html(
            '<line class="axis" x1="{l}" x2="{l}" y1="{t}" y2="{b}" stroke="#333"/>'
            '<line class="axis" x1="{l}" x2="{r}" y1="{b}" y2="{b}" stroke="#333"/>'
            '<text x="{l}" y="{yt}" class="axis-title">{tokens}</text>'
            '<text x="{r}" y="{xt}" text-anchor="end" class="axis-title">{day}</text>',
            l=self.left,
            r=self.left + self.plot_w,
            t=self.top_edge,
            b=self.top_edge + self.plot_h,
            yt=self.top_edge - 10,
            xt=self.height - 6,
            tokens=_("tokens"),
            day=_("day"),
        )

    def legend(self) -> str:
        # Beside the title when wide; on a line of its own, under it, when narrow.
        legend_x, top = (self.left, 28) if self.narrow else (self.width - RIGHT - 260, 10)
        return format_html(
            '<g class="legend">'
            '<rect x="{}" y="{}" width="12" height="12" fill="{}"/>'
            '<text x="{}" y="{}">{}</text>'
            '<rect x="{}" y="{}" width="12" height="12" fill="{}"/>'
            '<text x="{}" y="{}">{}</text></g>',
            legend_x,
            top,
            PROMPT_COLOUR,
            legend_x + 18,
            top + 10,
            _("prompt tokens"),
            legend_x + 130,
            top,
            COMPLETION_COLOUR,
            legend_x + 148,
            top + 10,
            _("completion tokens"),
        )

    def summary(self, title: str) -> str:
        """What the chart says, for screen readers (its label) and its tooltip."""
        if not (self.days and self.highest):
            return _("%(title)s: no tokens used in this range.") % {"title": title}
        peak = max(self.days, key=_tokens)
        return _(
            "%(title)s, %(start)s to %(end)s: %(total)s tokens in all; "
            "the busiest day was %(peak_day)s with %(peak)s tokens."
        ) % {
            "title": title,
            "start": _day(self.days[0]["day"]),
            "end": _day(self.days[-1]["day"]),
            "total": grouped(sum(row["total_tokens"] for row in self.days)),
            "peak_day": _day(peak["day"]),
            "peak": grouped(_tokens(peak)),
        }
