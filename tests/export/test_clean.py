"""`facetool dataset clean` on a real LFW cache with injected label noise: moved faces, a duplicate, a person under
two names. The flags are checked against the rules computed face by face over a plain forward pass."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from model_helpers import plain_embeddings

from facetool.cache import CacheWriter, FaceRecord, open_cache
from facetool.config.recognition import CleanConfig
from facetool.recognition.clean import find_flags


def cli(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "facetool", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def noisy(trained, tmp_path_factory) -> Path:
    """The training cache with 2 faces of person 0 moved to person 1, a face of person 2 stored twice, and
    person 3's later images under a second name."""
    people = trained.people
    path = tmp_path_factory.mktemp("noisy") / "noisy.h5"
    with open_cache(trained.cache) as cache, CacheWriter(path, image_size=cache.image_size) as writer:
        for i in range(len(cache)):
            rec = cache.record(i)
            person, name = rec.path.split("/")
            number = int(name.rsplit("_", 1)[1].split(".")[0])
            if person == people[0] and number <= 2:
                person = people[1]
            elif person == people[3] and number > 2:
                person = people[3] + "_alias"
            writer.add(FaceRecord(f"{person}/{name}", person, rec.size, rec.mtime_ns, rec.face, rec.box,
                                  rec.score, rec.detected))  # fmt: skip
            if rec.path == f"{people[2]}/{people[2]}_0001.jpg":
                writer.add(FaceRecord(f"{person}/{person}_copy.jpg", person, rec.size, rec.mtime_ns, rec.face,
                                      rec.box, rec.score, rec.detected))  # fmt: skip
        writer.commit()
    return path


def sq(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a - b) ** 2).sum())


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def reference_flags(emb: dict[str, np.ndarray], t: float) -> dict[tuple[str, str | None, str | None], float]:
    """Every rule, one face or pair at a time: (rule, path or identity, other) -> distance (default factors 1, 0.05, 0.5)."""
    people: dict[str, list[str]] = {}
    for path in sorted(emb):
        people.setdefault(path.split("/")[0], []).append(path)
    centre = {p: unit(sum(emb[x] for x in paths)) for p, paths in people.items()}
    found = {}
    for person, paths in people.items():
        for path in paths:
            if len(paths) < 2:
                continue
            own = sq(emb[path], unit(sum(emb[x] for x in paths if x != path)))
            if len(paths) >= 3 and own > t:
                found[("far", path, None)] = own
            other, d = min(
                ((o, sq(emb[path], c)) for o, c in centre.items() if o != person), key=lambda x: x[1]
            )
            if own > t and d < own and d <= t:
                found[("closer-to-other", path, other)] = d
        for b in range(1, len(paths)):
            a = min(range(b), key=lambda a: sq(emb[paths[a]], emb[paths[b]]))
            if sq(emb[paths[a]], emb[paths[b]]) <= 0.05 * t:
                found[("duplicate", paths[b], paths[a])] = sq(emb[paths[a]], emb[paths[b]])
    for a, b in itertools.combinations(sorted(people), 2):
        if sq(centre[a], centre[b]) <= 0.5 * t:
            found[("same-person", a, b)] = sq(centre[a], centre[b])
    return found


def test_clean_flags_by_the_rules_and_leaves_the_flagged_out(trained, noisy, tmp_path):
    emb = plain_embeddings(trained.checkpoint, noisy)
    names = sorted({p.split("/")[0] for p in emb})
    impostor = [
        sq(emb[a], emb[b])
        for a, b in itertools.combinations(sorted(emb), 2)
        if a.split("/")[0] != b.split("/")[0]
    ]
    t = float(np.percentile(impostor, 20))
    before = sha(noisy)
    out, html = tmp_path / "clean.h5", tmp_path / "report.html"
    done = cli(
        "dataset",
        "clean",
        noisy,
        "--model",
        trained.checkpoint,
        "--threshold",
        t,
        "-o",
        out,
        "--report",
        html,
        "--device",
        "cpu",
    )
    assert done.returncode == 0, done.stderr
    assert sha(noisy) == before
    report = json.loads((tmp_path / "clean.h5.flags.json").read_text())
    expected = reference_flags(emb, t)
    got = {(f["rule"], f["path"] or f["identity"], f["other"]): f["distance"] for f in report["flags"]}
    assert {"far", "closer-to-other", "duplicate"} <= {rule for rule, _, _ in expected}, (
        "every rule is exercised"
    )
    limits = {"far": t, "closer-to-other": t, "duplicate": 0.05 * t, "same-person": 0.5 * t}
    # the command embeds in other chunks and layout than the plain pass: only a distance within float noise
    # of its rule's limit may fall on the other side of it
    for key in set(got) ^ set(expected):
        assert got.get(key, expected.get(key)) == pytest.approx(limits[key[0]], abs=1e-5), key
    for key in set(got) & set(expected):
        assert got[key] == pytest.approx(expected[key], abs=1e-4)
    copy = f"{trained.people[2]}/{trained.people[2]}_copy.jpg"
    assert ("duplicate", copy, f"{trained.people[2]}/{trained.people[2]}_0001.jpg") in got
    assert report["limits"] == {"far": t, "closer-to-other": t, "duplicate": 0.05 * t, "same-person": 0.5 * t}
    rows = list(csv.DictReader((tmp_path / "clean.h5.flags.csv").open()))
    assert [(r["rule"], r["path"] or None) for r in rows] == [(f["rule"], f["path"]) for f in report["flags"]]

    dropped = {f["path"] for f in report["flags"] if f["rule"] != "same-person"}
    with open_cache(noisy) as source, open_cache(out) as cleaned:
        assert sorted(cleaned.paths) == sorted(set(source.paths) - dropped)
        for i, path in enumerate(cleaned.paths):
            assert (cleaned.read_faces([i]) == source.read_faces([source.paths.index(path)])).all()
        assert cleaned.meta["clean"]["flagged"] == sorted(dropped)
    page = html.read_text()
    assert page.count("<section>") == len(report["flags"])
    assert page.count('src="data:image/jpeg;base64,') >= len(dropped) and 'src="http' not in page
    assert len(names) == report["identities"] and 0 < len(dropped) < report["faces"]

    marked = tmp_path / "marked.h5"
    done = cli(
        "dataset",
        "clean",
        noisy,
        "--model",
        trained.checkpoint,
        "--threshold",
        t,
        "-o",
        marked,
        "--mark-only",
        "--device",
        "cpu",
    )
    assert done.returncode == 0, done.stderr
    with open_cache(noisy) as source, open_cache(marked) as kept:
        assert sorted(kept.paths) == sorted(source.paths)
        assert kept.meta["clean"]["flagged"] == sorted(dropped)


def test_clean_errors_are_one_line(trained, noisy, tmp_path):
    empty = tmp_path / "empty.h5"
    with CacheWriter(empty, image_size=64) as writer:
        writer.commit()
    done = cli(
        "dataset", "clean", empty, "--model", trained.checkpoint, "--threshold", 1, "-o", tmp_path / "o.h5"
    )
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    assert "has no identities" in done.stderr
    done = cli("dataset", "clean", noisy, "--model", trained.checkpoint, "-o", tmp_path / "o.h5")
    assert done.returncode == 2 and "no verification threshold" in done.stderr
    done = cli("dataset", "clean", noisy, "--model", trained.checkpoint, "--threshold", 1, "-o", noisy)
    assert done.returncode == 2 and "names an input" in done.stderr
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium to render the report with")
def test_report_renders_in_headless_chromium(trained, noisy, tmp_path):
    html, shot = tmp_path / "report.html", tmp_path / "report.png"
    args = [
        "dataset",
        "clean",
        noisy,
        "--model",
        trained.checkpoint,
        "--threshold",
        0.5,
        "-o",
        tmp_path / "c.h5",
    ]
    done = cli(*args, "--report", html, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    flags = json.loads((tmp_path / "c.h5.flags.json").read_text())["flags"]
    assert flags and html.read_text().count("<section>") == len(flags)
    browser = [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    shown = subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1200,900", html.as_uri()],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1200)
    thumbnails = image[120:, :, :]
    assert thumbnails.std() > 20  # faces drawn, not a blank or error page
    artifacts = os.environ.get("FACETOOL_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(artifacts) / "clean-report.png")


def test_same_person_pairs_come_closest_first():
    """The same-person list is for review: its pairs are ordered by centre distance, not by identity name."""
    rng = np.random.default_rng(0)
    base = [unit(v) for v in rng.normal(size=(3, 16))]
    offsets = {"a": 0.3, "b": 0.05, "c": 0.15}  # each person's second name, this far from the first
    emb, labels, names = [], [], []
    for k, (name, off) in enumerate(offsets.items()):
        for alias, shift in ((name, 0.0), (f"{name}_alias", off)):
            names.append(alias)
            for _ in range(2):
                emb.append(unit(base[k] + shift * unit(rng.normal(size=16))))
                labels.append(len(names) - 1)
    flags, _ = find_flags(
        np.stack(emb), np.asarray(labels), names, [f"f{i}" for i in range(len(emb))], 1.0, "euclidean",
        CleanConfig(),
    )  # fmt: skip
    pairs = [(f.identity, f.other) for f in flags if f.rule == "same-person"]
    assert pairs == [("b", "b_alias"), ("c", "c_alias"), ("a", "a_alias")]
