"""Rendering an evaluation: a rich table per fold with a summary, and the files of --out."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from facetool.errors import FacetoolError
from facetool.evaluation.roc import plot_roc
from facetool.evaluation.run import EvalReport
from facetool.files import atomic_write_text, make_dir

REPORT_FILES = ("report.json", "roc.png")
PACKS_REPORT = "packs.json"


def warning_line(report: EvalReport) -> str:
    """NOT HELD OUT when the model was trained on some scored people; else a note when it was trained on
    people whose pairs chose the threshold; else empty."""
    if report.held_out is False:
        return f"NOT HELD OUT: the model was trained on {report.trained_identities_in_pairs} of the pairs' people"
    if report.held_out and report.threshold_identities_trained:
        return (
            f"threshold chosen on pairs of {report.threshold_identities_trained} people the model was trained on"
            " (it can sit too low for new people)"
        )
    return ""


def fold_table(report: EvalReport) -> Table:
    """One row per fold (accuracy, threshold, VAL, FAR) and a mean ± std row."""
    table = Table(
        title=f"{report.pairs_file}: {report.protocol}, {report.distance} distance"
        + (", flip" if report.flip else ""),
        caption=warning_line(report) or None,
    )
    table.add_column("fold", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column(f"VAL@FAR={report.far_target:g}", justify="right")
    table.add_column("FAR", justify="right")
    rows = zip(report.fold_accuracy, report.fold_threshold, report.fold_val, report.fold_far, strict=True)
    for k, (acc, thr, val, far) in zip(report.folds, rows, strict=True):
        table.add_row(str(k), f"{acc:.4f}", f"{thr:.2f}", f"{val:.4f}", f"{far:.5f}")
    table.add_section()
    table.add_row(
        "mean",
        f"{report.accuracy:.4f} ± {report.accuracy_std:.4f}",
        "",
        f"{report.val:.4f} ± {report.val_std:.4f}",
        f"{report.far:.5f}",
    )
    return table


def summary_line(report: EvalReport) -> str:
    """The headline figures in one line (with the not-held-out warning when it applies)."""
    warning = warning_line(report)
    return ("" if not warning else f"{warning}   ") + (
        f"accuracy {report.accuracy:.4f} ± {report.accuracy_std:.4f}   "
        f"VAL@FAR={report.far_target:g} {report.val:.4f} ± {report.val_std:.4f} (FAR {report.far:.5f})   "
        f"AUC {report.auc:.4f}   EER {report.eer:.4f}   "
        f"{report.num_pairs} pairs, {report.num_images} images"
    )


def render_report(report: EvalReport, console: Console) -> None:
    """Print the fold table and the summary line."""
    console.print(fold_table(report))
    console.print(summary_line(report), highlight=False)
    if report.identification is not None and report.clustering is not None:
        ident, clus = report.identification, report.clustering
        dir_text = "-" if ident["dir_at_far"] is None else f"{ident['dir_at_far']:.4f}"
        console.print(
            f"identification: rank-1 {ident['rank1']:.4f}, rank-5 {ident['rank5']:.4f} "
            f"({ident['probes']} probes, {ident['gallery_identities']} identities); "
            f"DIR {dir_text} at FAR {ident['far']:g} ({ident['impostor_probes']} impostor probes)",
            highlight=False,
        )
        console.print(
            f"clustering: precision {clus['precision']:.4f}, recall {clus['recall']:.4f}, "
            f"F {clus['f_measure']:.4f}, NMI {clus['nmi']:.4f} ({clus['clusters']} clusters of "
            f"{clus['faces']} faces, {clus['identities']} people)",
            highlight=False,
        )


def write_report(report: EvalReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write report.json and roc.png into `out_dir`; returns their paths."""
    out_dir = make_dir(out_dir)
    json_path = out_dir / REPORT_FILES[0]
    try:
        atomic_write_text(json_path, report.to_json() + "\n")
        return json_path, plot_roc(report, out_dir / REPORT_FILES[1])
    except OSError as exc:
        raise FacetoolError(f"{out_dir}: cannot write the report ({exc.strerror or exc})") from None


def pack_table(reports: list[EvalReport]) -> Table:
    """One row per verification pack, as arcface_torch prints its validation sets."""
    table = Table(title=f"verification packs: {reports[0].protocol}, {reports[0].distance} distance, flip")
    for name in ("pack", "pairs", "accuracy", f"VAL@FAR={reports[0].far_target:g}", "AUC", "EER"):
        table.add_column(name, justify="left" if name == "pack" else "right")
    for r in reports:
        table.add_row(
            Path(r.pairs_file).name,
            f"{r.num_pairs:,}",
            f"{r.accuracy:.4f} ± {r.accuracy_std:.4f}",
            f"{r.val:.4f} ± {r.val_std:.4f}",
            f"{r.auc:.4f}",
            f"{r.eer:.4f}",
        )
    return table


def write_pack_reports(reports: list[EvalReport], out_dir: str | Path) -> Path:
    """Write packs.json (a list of reports, one per pack) into `out_dir`."""
    out_dir = make_dir(out_dir)
    path = out_dir / PACKS_REPORT
    try:
        atomic_write_text(path, json.dumps([r.to_dict() for r in reports], indent=2) + "\n")
    except OSError as exc:
        raise FacetoolError(f"{out_dir}: cannot write the report ({exc.strerror or exc})") from None
    return path
