"""PNG curves of a training run's history: loss, learning rate, triplet selection, validation accuracy.

Drawn with matplotlib's Agg canvas directly, so no pyplot state or display is involved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from facetool.errors import FacetoolError
from facetool.files import atomic_output, make_dir
from facetool.training.history import load_history

Series = list[tuple[str, str]]


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _figure(
    history: list[dict[str, Any]], series: Series, ylabel: str, path: Path, log: bool = False
) -> Path:
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for key, label in series:
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if len(series) > 1 and ax.lines:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


PLOTS: dict[str, Callable[[list[dict[str, Any]], Path], Path]] = {
    "loss.png": lambda h, p: _figure(
        h, [("train_loss", "training"), ("val_loss", "validation")], "triplet loss", p
    ),
    "learning_rate.png": lambda h, p: _figure(
        h, [("learning_rate", "learning rate")], "learning rate", p, True
    ),
    "triplets.png": lambda h, p: _figure(
        h, [("active_fraction", "active")], "fraction of trained triplets with positive loss", p
    ),
    "val_accuracy.png": lambda h, p: _figure(h, [("val_accuracy", "accuracy")], "validation accuracy", p),
}

# A plot is drawn only when the history has a value for one of these keys (no empty validation plot).
NEEDS: dict[str, tuple[str, ...]] = {
    "val_accuracy.png": ("val_accuracy",),
    "triplets.png": ("active_fraction",),
}


def plot_history(history: list[dict[str, Any]], out_dir: Path | str) -> list[Path]:
    """Write one PNG per curve the history has values for into `out_dir`; returns their paths."""
    if not history:
        raise FacetoolError(f"{out_dir}: the training history is empty, nothing to plot")
    out_dir = Path(out_dir)
    make_dir(out_dir)
    return [
        draw(history, out_dir / name)
        for name, draw in PLOTS.items()
        if any(r.get(key) is not None for r in history for key in NEEDS.get(name, ("epoch",)))
    ]


def plot_run(run_dir: Path | str, out_dir: Path | str | None = None) -> list[Path]:
    """Plots of a run directory's history.json (into the run directory unless `out_dir` is given)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FacetoolError(f"{run_dir}: run directory not found")
    return plot_history(load_history(run_dir / "history.json"), out_dir or run_dir)
