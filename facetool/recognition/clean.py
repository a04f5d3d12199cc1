"""`facetool dataset clean`: find the faces of a training cache whose labels the model doubts.

Every face is embedded (cropped as stored in the cache). With t the model's verification threshold, the rules
are (distances in the card's metric; each factor is a `CleanConfig` setting):
- `far`: a face farther than far_factor * t from the centre of its identity's other faces (the normalised
  mean, leaving the face out), in identities of at least `min_faces` faces;
- `closer-to-other`: a face the model would not verify as its own identity (farther than t from its own
  centre) but would as another's (within t of that identity's centre, and nearer to it than to its own);
- `duplicate`: a face within duplicate_factor * t of an earlier face (by path) of its identity;
- `same-person`: two identities whose centres are within merge_factor * t (reported closest first, a list to
  review; nothing dropped).
The output cache leaves the faces of the first three rules out (`mark_only`: keeps every face), copying the
stored bytes unchanged (`cache.write_selection`); the flags, with their distances and limits, go to JSON,
CSV and an HTML report.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facetool.cache import FaceCache, open_cache, write_selection
from facetool.config.recognition import CleanConfig
from facetool.errors import UsageError
from facetool.evaluation.identification import in_chunks, nearest_identities, to_distance
from facetool.files import atomic_write_text, check_output_not_input
from facetool.recognition import pages
from facetool.recognition.faces import embed_inputs, load_model

DROPPING = ("far", "closer-to-other", "duplicate")
TYPICAL = 4
CENTRE_CHUNK = 4096  # identities compared with all the others at once
FLAG_FIELDS = ("rule", "identity", "path", "distance", "limit", "other", "other_distance")


@dataclass(frozen=True)
class Flag:
    """One rule that fired: on a face (`path`) or on an identity pair (`same-person`, `path` None)."""

    rule: str
    identity: str
    path: str | None
    distance: float
    limit: float
    other: str | None = None  # the other identity, or the earlier duplicate's path
    other_distance: float | None = None  # closer-to-other: the distance to the own centre


@dataclass
class CleanReport:
    source: str
    output: str
    faces: int
    identities: int
    threshold: float
    metric: str
    limits: dict[str, float]
    flags: list[Flag] = field(default_factory=list)
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def counts(self) -> dict[str, int]:
        return {rule: sum(f.rule == rule for f in self.flags) for rule in (*DROPPING, "same-person")}


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def find_flags(
    embeddings: np.ndarray,
    labels: np.ndarray,
    identities: list[str],
    paths: list[str],
    threshold: float,
    metric: str,
    config: CleanConfig,
) -> tuple[list[Flag], dict[str, float]]:
    """The flags of every rule on faces `embeddings` (unit rows) labelled `labels` (index into `identities`)."""
    limits = {
        "far": config.far_factor * threshold,
        "closer-to-other": threshold,
        "duplicate": config.duplicate_factor * threshold,
        "same-person": config.merge_factor * threshold,
    }
    emb = embeddings.astype(np.float64)
    count = np.bincount(labels, minlength=len(identities))
    sums = np.zeros((len(identities), emb.shape[1]))
    np.add.at(sums, labels, emb)
    centres = _unit(sums)
    own = np.where(count[labels][:, None] > 1, sums[labels] - emb, 0.0)
    d_own = to_distance(np.einsum("nd,nd->n", emb, _unit(own)), metric)
    ids = np.arange(len(identities))
    d2, l2 = nearest_identities(emb, in_chunks(centres, ids, 65536), 2, metric)
    other_first = l2[:, 0] != labels
    d_other = np.where(other_first, d2[:, 0], d2[:, 1])
    l_other = np.where(other_first, l2[:, 0], l2[:, 1])
    flags: list[Flag] = []
    for i in range(len(labels)):
        name, n = identities[labels[i]], count[labels[i]]
        if n >= config.min_faces and d_own[i] > limits["far"]:
            flags.append(Flag("far", name, paths[i], float(d_own[i]), limits["far"]))
        if (
            n >= 2
            and l_other[i] >= 0
            and d_own[i] > threshold
            and d_other[i] < d_own[i]
            and d_other[i] <= limits["closer-to-other"]
        ):
            flags.append(
                Flag(
                    "closer-to-other",
                    name,
                    paths[i],
                    float(d_other[i]),
                    limits["closer-to-other"],
                    identities[l_other[i]],
                    float(d_own[i]),
                )
            )
    for k, name in enumerate(identities):
        rows = sorted(np.nonzero(labels == k)[0], key=paths.__getitem__)
        if len(rows) < 2:
            continue
        dist = to_distance(emb[rows] @ emb[rows].T, metric)
        for b in range(1, len(rows)):
            a = int(np.argmin(dist[b, :b]))
            if dist[b, a] <= limits["duplicate"]:
                flags.append(
                    Flag(
                        "duplicate",
                        name,
                        paths[rows[b]],
                        float(dist[b, a]),
                        limits["duplicate"],
                        paths[rows[a]],
                    )
                )
    pairs: list[Flag] = []
    present = np.nonzero(count > 0)[0]
    for start in range(0, len(present), CENTRE_CHUNK):
        rows = present[start : start + CENTRE_CHUNK]
        dist = to_distance(centres[rows] @ centres[present].T, metric)
        for r, c in zip(*np.nonzero(dist <= limits["same-person"]), strict=True):
            a, b = rows[r], present[c]
            if a < b:
                pairs.append(
                    Flag(
                        "same-person",
                        identities[a],
                        None,
                        float(dist[r, c]),
                        limits["same-person"],
                        identities[b],
                    )
                )
    pairs.sort(key=lambda flag: flag.distance)
    return flags + pairs, limits


def flags_csv(flags: list[Flag]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FLAG_FIELDS, lineterminator="\n")
    writer.writeheader()
    for flag in flags:
        writer.writerow({key: "" if value is None else value for key, value in asdict(flag).items()})
    return out.getvalue()


def flags_paths(out: Path) -> tuple[Path, Path]:
    """Where the flags of the cache `out` go: beside it, `<name>.flags.json` and `<name>.flags.csv`."""
    return out.with_name(out.name + ".flags.json"), out.with_name(out.name + ".flags.csv")


def clean_cache(
    model_path: Path | str,
    source: Path | str,
    out: Path | str,
    config: CleanConfig | None = None,
    report_html: Path | str | None = None,
) -> CleanReport:
    """Embed every face of the cache `source`, flag it by the rules above, and write the cleaned cache `out`
    with its flags beside it (and the HTML report when `report_html` is given)."""
    config = config or CleanConfig()
    source, out = Path(source), Path(out)
    outputs = [out, *flags_paths(out), *([Path(report_html)] if report_html else [])]
    for path in outputs:
        check_output_not_input(path, [source, model_path])
    with open_cache(source) as cache:
        if len(cache) == 0:
            raise UsageError(f"{source}: the cache has no identities (no faces to clean)")
        model = load_model(model_path, config)
        embedded = embed_inputs(model, [source])
        labels = np.asarray(cache.labels, np.int64)
        flags, limits = find_flags(
            embedded.embeddings,
            labels,
            list(cache.identities),
            list(cache.paths),
            model.decision.threshold,
            model.decision.metric,
            config,
        )
        report = CleanReport(
            str(source), str(out), len(cache), len(np.unique(labels)),
            model.decision.threshold, model.decision.metric, limits, flags,
        )  # fmt: skip
        dropped = {f.path for f in flags if f.rule in DROPPING}
        kept = [i for i, p in enumerate(cache.paths) if config.mark_only or p not in dropped]
        report.dropped = len(cache) - len(kept)
        meta = {
            **cache.meta,
            "cleaned_from": str(source),
            "clean": {
                "model_sha256": model.sha256,
                "limits": limits,
                "mark_only": config.mark_only,
                "flagged": sorted(dropped),
            },
        }
        write_selection(out, [(cache, kept, list(cache.failures))], meta)
        json_path, csv_path = flags_paths(out)
        atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
        atomic_write_text(csv_path, flags_csv(flags))
        if report_html is not None:
            atomic_write_text(report_html, report_page(cache, embedded.embeddings, labels, report))
    return report


def _typical(cache: FaceCache, embeddings: np.ndarray, labels: np.ndarray, k: int, skip: set[str]) -> str:
    """Figures of the TYPICAL faces of identity `k` nearest its centre, flagged faces left out (unless all are)."""
    members = np.nonzero(labels == k)[0]
    rows = [i for i in members if cache.paths[i] not in skip] or list(members)
    centre = _unit(embeddings[rows].sum(axis=0))
    rows = sorted(rows, key=lambda i: -float(embeddings[i] @ centre))[:TYPICAL]
    faces = cache.read_faces(np.array(sorted(rows)))
    return "".join(
        pages.figure(face, f"typical {cache.paths[i]}") for face, i in zip(faces, sorted(rows), strict=True)
    )


def report_page(cache: FaceCache, embeddings: np.ndarray, labels: np.ndarray, report: CleanReport) -> str:
    """The HTML report: each flagged face beside its identity's typical faces (and the other identity's)."""
    index = {p: i for i, p in enumerate(cache.paths)}
    number = {name: k for k, name in enumerate(cache.identities)}
    flagged = {f.path for f in report.flags if f.path is not None}
    sections = []
    for flag in report.flags:
        figures = []
        if flag.path is not None:
            face = cache.read_faces(np.array([index[flag.path]]))[0]
            figures.append(pages.figure(face, f"flagged {flag.path}", css="flag"))
        figures.append(_typical(cache, embeddings, labels, number[flag.identity], flagged))
        if flag.rule in ("closer-to-other", "same-person") and flag.other is not None:
            figures.append(_typical(cache, embeddings, labels, number[flag.other], flagged))
        if flag.rule == "duplicate" and flag.other is not None:
            figures.append(
                pages.figure(cache.read_faces(np.array([index[flag.other]]))[0], f"earlier {flag.other}")
            )
        what = f"{flag.rule}: {flag.identity}" + (f" / {flag.other}" if flag.other else "")
        heading = f"{what} (distance {flag.distance:.4f}, limit {flag.limit:.4f})"
        sections.append(pages.section(heading, figures))
    counts = ", ".join(f"{rule} {n}" for rule, n in report.counts().items())
    intro = (
        f"{report.faces} faces of {report.identities} identities; threshold {report.threshold:.4f} "
        f"({report.metric}); flags: {counts}; {report.dropped} faces left out of {report.output}"
    )
    return pages.page(f"dataset clean {report.source}", sections, intro)
