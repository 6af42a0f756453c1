"""Draw ``CallStats`` as a PNG: the funnel and calls per hour, for staff who would
rather look than read.

Uses matplotlib's object API on an Agg canvas (no pyplot, no display, no global
figure state), so it runs on a server and in tests.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ivr.cli.call_stats import CallStats

__all__ = ["draw"]

_BAR = "#2f6b9a"
_PAID = "#2e8b57"


def draw(stats: CallStats, path: Path, *, title: str) -> None:
    """Write the funnel (left) and calls per local hour (right) to ``path`` as a PNG."""
    figure = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    funnel_axes, hours_axes = figure.subplots(1, 2, width_ratios=(1, 1.2))
    figure.suptitle(title, fontsize=13)

    names = [stage.name for stage in stats.funnel]
    counts = [stage.calls for stage in stats.funnel]
    started = counts[0] if counts else 0
    positions = list(range(len(names)))
    colors = [_PAID if name == "paid" else _BAR for name in names]
    funnel_axes.barh(positions, counts, color=colors)
    funnel_axes.set_yticks(positions, labels=names)
    funnel_axes.invert_yaxis()  # started at the top
    funnel_axes.set_xlabel("calls")
    funnel_axes.set_title("Where calls got to")
    funnel_axes.set_xlim(0, max(started, 1) * 1.3)
    funnel_axes.xaxis.get_major_locator().set_params(integer=True)
    for position, count in zip(positions, counts, strict=True):
        share = f" ({count / started:.1%})" if started else ""
        funnel_axes.text(count, position, f" {count}{share}", va="center", fontsize=10)

    hours = list(range(24))
    hours_axes.bar(hours, list(stats.per_hour), color=_BAR, width=0.8)
    hours_axes.set_xticks(hours[::2], labels=[f"{hour:02d}" for hour in hours[::2]])
    hours_axes.set_xlim(-0.6, 23.6)
    hours_axes.set_xlabel("hour of the day (utility's time zone)")
    hours_axes.set_ylabel("calls started")
    hours_axes.set_title("Calls per hour")
    hours_axes.yaxis.get_major_locator().set_params(integer=True)

    figure.savefig(path, format="png")
