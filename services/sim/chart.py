"""The report's chart: warnings per simulated hour above, SLA compliance per tier by the hour tasks arose below.
matplotlib is imported here only, and only when a chart is drawn (it is in the `local` extra, not the image)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from services.sim.report import TIERS, Tally

COLOURS = {"sms": "#7f7f7f", "call": "#1f77b4", "visit": "#d62728", "follow_up": "#2ca02c"}


def draw(
    path: Path,
    *,
    arrivals_per_hour: Mapping[int, int],
    hourly: Mapping[str, Mapping[int, Tally]],
    target: float,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [1, 2]}, constrained_layout=True
    )
    hours = sorted(arrivals_per_hour)
    top.bar([h + 0.5 for h in hours], [arrivals_per_hour[h] for h in hours], width=0.9, color="#9ecae1")
    top.set_ylabel("warnings / hour")
    top.set_title(title, fontsize=11)
    for tier in TIERS:
        points = sorted((h, t.rate) for h, t in hourly.get(tier, {}).items() if t.rate is not None)
        if points:
            bottom.plot(
                [h + 0.5 for h, _ in points],
                [100 * r for _, r in points],
                marker="o",
                markersize=3,
                label=tier,
                color=COLOURS[tier],
            )
    bottom.axhline(100 * target, color=COLOURS["visit"], linestyle=":", linewidth=1, label=f"visit target {target:.0%}")
    bottom.set_ylim(-2, 102)
    bottom.set_ylabel("tasks on time (%), by the hour they arose")
    bottom.set_xlabel("simulated hour")
    bottom.legend(loc="lower left", fontsize=8, ncols=5)
    bottom.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
