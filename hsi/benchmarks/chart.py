"""The benchmark chart: measured headline metric beside the published one, a panel per task."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hsi.benchmarks.records import (
    TASK_TABLES,
)

if TYPE_CHECKING:
    from hsi.benchmarks.tables import Row


def plot(rows: Sequence[Row], path: str | Path) -> Path:
    """Bar chart per task: the measured headline metric (OA, PSNR, mAP50:95; mean ± std over
    seeds) beside the published one, per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from hsi.data.writers import atomic_output

    panels = []
    for task, table in TASK_TABLES.items():
        task_rows = [r for r in rows if r.task == task and table.headline in r.stats]
        if task_rows:
            panels.append((table, task_rows))
    if not panels:
        panels = [(TASK_TABLES["classification"], [])]
    widest = max(len(r) for _, r in panels)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(6.0, 2.5 * widest + 1.5), 4.8 * len(panels)), squeeze=False
    )
    width = 0.38
    colors = {True: "#e08a2c", False: "#2c7fb8", None: "#888888"}
    for ax, (table, task_rows) in zip(axes[:, 0], panels, strict=True):
        key = table.headline
        label, top = table.axis_label, table.axis_top
        x = np.arange(len(task_rows))
        highest = 0.0
        for i, row in enumerate(task_rows):
            s = row.stats[key]
            ax.bar(
                x[i] - width / 2,
                s.mean,
                width,
                yerr=s.std,  # none with one seed
                capsize=4,
                color=colors[row.leaky],
                hatch="//" if row.leaky else None,
                edgecolor="black",
                linewidth=0.5,
            )
            bar_top = s.mean + (s.std or 0.0)
            highest = max(highest, bar_top)
            text = table.fmt(key, s.mean)
            ax.text(x[i] - width / 2, bar_top, text, ha="center", va="bottom", fontsize=7)
            if row.published is not None and key in row.published.metrics:
                p = row.published.metrics[key]
                highest = max(highest, p)
                ax.bar(
                    x[i] + width / 2,
                    p,
                    width,
                    yerr=row.published.std.get(key),
                    capsize=4,
                    color="#bbbbbb",
                    edgecolor="black",
                    linewidth=0.5,
                )
                text = table.fmt(key, p)
                ax.text(x[i] + width / 2, p, text, ha="center", va="bottom", fontsize=7)
            else:
                ax.text(x[i] + width / 2, 0.02 * (top or highest or 1.0), "no published\nnumber",
                        ha="center", fontsize=6)  # fmt: skip
        ax.set_xticks(x)
        ax.set_xticklabels(
            [f"{r.label}\n{r.protocol_label}, n={r.n}" for r in task_rows], fontsize=7
        )
        ax.set_xlim(-0.6, max(len(task_rows), 1) - 0.4)
        ceiling = top if top is not None else max(highest, 1.0) * 1.05
        ax.set_ylim(0.0, ceiling * 1.15)
        ax.set_ylabel(label)
        ax.set_title(f"measured vs published {table.labels[key]}", fontsize=10)
        ax.legend(
            handles=[
                Patch(facecolor=colors[False], edgecolor="black", label="measured, leak-free"),
                Patch(
                    facecolor=colors[True], edgecolor="black", hatch="//", label="measured, leaky"
                ),
                Patch(facecolor="#bbbbbb", edgecolor="black", label="published"),
            ],
            fontsize=7,
            loc="upper center",
            ncol=3,
            frameon=False,
        )
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return Path(path)
