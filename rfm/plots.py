"""The one accuracy-vs-shots plot, drawn by `rfm demo` and the benchmark reports (matplotlib, training extra)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Curve:
    """One line: held-out accuracy at each m, with an optional band (e.g. a 95% interval)."""

    label: str
    shots: Sequence[int]
    accuracy: Sequence[float]
    band: tuple[Sequence[float], Sequence[float]] | None = None
    style: str = "-"


def plot_accuracy(curves: Sequence[Curve], path: str | Path, title: str, size: tuple[float, float] = (6, 4),
                  dpi: int = 120, legend_size: float | None = None) -> None:
    """Accuracy against the number of choices used to adapt, chance marked, saved to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    for curve in curves:
        ax.plot(curve.shots, curve.accuracy, marker="o", ls=curve.style, label=curve.label)
        if curve.band is not None:
            ax.fill_between(curve.shots, curve.band[0], curve.band[1], alpha=0.15)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("choices used to adapt (m)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
