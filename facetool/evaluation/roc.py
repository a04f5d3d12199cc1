"""The ROC plot of an evaluation, drawn on an Agg canvas (no display, no pyplot global state)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from facetool.evaluation.run import EvalReport
from facetool.files import atomic_output


def plot_roc(report: EvalReport, path: str | Path) -> Path:
    """Draw the fold-averaged ROC (log FAR axis) with AUC, EER and VAL@FAR in the legend; save to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positive = report.roc_fpr > 0
    ax.plot(
        report.roc_fpr[positive],
        report.roc_tpr[positive],
        label=f"AUC {report.auc:.4f}, EER {report.eer:.4f}",
    )
    ax.axvline(
        report.far_target,
        color="grey",
        linestyle=":",
        label=f"VAL@FAR={report.far_target:g}: {report.val:.4f} ± {report.val_std:.4f}",
    )
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"LFW ROC ({report.protocol}, {report.distance}{', flip' if report.flip else ''})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
