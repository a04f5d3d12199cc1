"""The `verification` callback on a real training run: packs and pairs scored every epoch as `eval` scores
them, logged, and best.pth chosen by one of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facetool.cache import open_cache
from facetool.config.train import TrainConfig
from facetool.errors import ConfigError
from facetool.evaluation.packs import evaluate_pack
from facetool.inference import load_embedder
from facetool.models.checkpoint import load_checkpoint
from facetool.training.loop import train


def tiny(cache: Path, run_dir: Path, **changes) -> TrainConfig:
    settings = {
        "data_dir": cache, "checkpoint_dir": run_dir, "backbone": "tiny-cnn", "image_size": 48,
        "embedding_dim": 16, "batch_size": 30, "epoch_size": 3, "num_epochs": 3, "people_per_batch": 6,
        "images_per_person": 4, "learning_rate": 0.01, "device": "cpu", "threads": 1,
        "validation": {"fraction": 0.0}, **changes,
    }  # fmt: skip
    return TrainConfig.model_validate(settings)


@pytest.fixture
def pairs_csv(small_cache: Path, tmp_path: Path) -> Path:
    """10 matched and 10 mismatched pairs of the cache's own faces."""
    with open_cache(small_cache) as cache:
        by_person: dict[str, list[str]] = {}
        for path in cache.paths:
            by_person.setdefault(path.split("/")[0], []).append(path)
    people = sorted(name for name, paths in by_person.items() if len(paths) >= 4)[:5]
    rows = [f"{by_person[n][a]},{by_person[n][a + 1]},1" for n in people for a in (0, 2)]
    rows += [
        f"{by_person[a][0]},{by_person[b][1]},0" for a, b in zip(people, people[1:] + people[:1], strict=True)
    ]
    rows += [
        f"{by_person[a][2]},{by_person[b][3]},0" for a, b in zip(people, people[2:] + people[:2], strict=True)
    ]
    path = tmp_path / "own.csv"
    path.write_text("\n".join(["path1,path2,same", *rows]) + "\n")
    return path


def test_packs_and_pairs_are_scored_every_epoch_and_choose_best(
    shared: Path, small_cache: Path, pairs_csv: Path, tmp_path: Path
) -> None:
    pack = shared / "formats" / "real" / "insightface" / "small_lfw.bin"
    run = tmp_path / "run"
    settings = {
        "packs": [str(pack)],
        "pairs": [str(pairs_csv)],
        "data": str(small_cache),
        "best_by": "own.csv",
    }
    result = train(tiny(small_cache, run, callbacks={"verification": settings}))
    assert result.epochs == 3
    scores = json.loads((run / "verification.json").read_text())
    assert [(r["epoch"], r["set"]) for r in scores] == [
        (e, s) for e in (1, 2, 3) for s in ("small_lfw.bin", "own.csv")
    ]
    log = (run / "train.log").read_text()
    assert "[small_lfw.bin] epoch 3: accuracy-flip" in log and "[own.csv] epoch 1: accuracy-flip" in log
    own = [(-r["accuracy"], r["epoch"]) for r in scores if r["set"] == "own.csv"]
    assert load_checkpoint(run / "best.pth")["epoch"] == min(own)[1]
    embedder, _ = load_embedder(run / "last.pth", device="cpu", flip=True)
    final = next(r for r in scores if r["epoch"] == 3 and r["set"] == "small_lfw.bin")
    assert evaluate_pack(embedder, pack).accuracy == pytest.approx(final["accuracy"], abs=1e-12)


def test_best_by_must_name_one_of_the_sets(shared: Path, small_cache: Path, tmp_path: Path) -> None:
    pack = shared / "formats" / "real" / "insightface" / "small_lfw.bin"
    config = tiny(
        small_cache, tmp_path / "run", callbacks={"verification": {"packs": [str(pack)], "best_by": "x"}}
    )
    with pytest.raises(ConfigError, match=r"best_by = 'x': not one of small_lfw\.bin"):
        train(config)
