"""Settings of the LFW protocol run: which view and folds, where the images are, and the training recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from facetool.config.base import StrictModel
from facetool.config.detect import RETIRED as DETECT_RETIRED
from facetool.config.detect import DetectConfig
from facetool.config.evaluate import DistanceName
from facetool.config.train import RETIRED, TrainConfig

ALL_FOLDS = list(range(1, 11))


class ProtocolConfig(StrictModel):
    """One LFW verification run end to end: detect, leave the test people out, train, evaluate.

    `train.data_dir` and `train.checkpoint_dir` are set per split (in `out`); everything else in `train` is
    the recipe every split trains with.
    """

    lfw_dir: Path | None = Field(None, description="LFW image folder (lfw-deepfunneled).")
    pairs_dir: Path | None = Field(
        None,
        description="Folder of pairs.txt, pairsDevTrain.txt, pairsDevTest.txt (default: beside lfw_dir).",
    )
    faces: Path | None = Field(
        None, description="An existing face cache of lfw_dir to use (default: detect into out/faces.h5)."
    )
    out: Path = Field(Path("runs/lfw-protocol"), description="Folder of the splits' caches, runs, reports.")
    view: Literal[1, 2] = Field(
        1, description="1: train without pairsDevTest's people, test on it; 2: one model per fold."
    )
    folds: list[int] = Field(
        default_factory=lambda: list(ALL_FOLDS), description="View 2: the folds (1-10) to train and test."
    )
    flip: bool = Field(False, description="Add the mirrored face's embedding at test time.")
    threshold_holdout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Hold this share of the training people out of training and choose the threshold on "
        "pairs among them; 0: on the view's own (pairsDevTrain.txt, the other folds), whose people are "
        "trained on, which puts a class-based loss's threshold too low.",
    )
    threshold_pairs: int = Field(
        300,
        ge=1,
        description="With threshold_holdout: matched pairs drawn among those people, as many mismatched.",
    )
    models: int = Field(
        1,
        ge=1,
        le=16,
        description="Models per split, trained side by side in their own processes (train.threads each) with "
        "seeds train.seed, train.seed + 1, ...; scored as one ensemble, their squared distances averaged.",
    )
    snapshots: list[int] = Field(
        default_factory=list,
        description="Also score each model's checkpoint of these epochs as ensemble members (a snapshot "
        "ensemble: more members for no more training); each a multiple of train.checkpoint_every, below "
        "train.num_epochs.",
    )
    jobs: int = Field(
        0,
        ge=0,
        le=16,
        description="With several models: at most this many train at once, the next starting when one ends "
        "(0: all at once). The models do not depend on it; the training time reported does.",
    )
    distance: DistanceName = Field("euclidean", description="euclidean (squared) or cosine.")
    device: str = Field("auto", description="Evaluation device (training uses train.device).")
    detect: DetectConfig = Field(default_factory=DetectConfig, description="Detection of lfw_dir.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The training recipe.")

    @field_validator("folds")
    @classmethod
    def _known_folds(cls, folds: list[int]) -> list[int]:
        if not folds:
            raise ValueError("give at least one fold")
        bad = [k for k in folds if k not in ALL_FOLDS]
        if bad:
            raise ValueError(f"folds are numbered 1 to 10, got {bad}")
        if len(set(folds)) != len(folds):
            raise ValueError(f"fold listed twice in {folds}")
        return folds

    @model_validator(mode="after")
    def _saved_snapshots(self) -> ProtocolConfig:
        every, last = self.train.checkpoint_every, self.train.num_epochs
        saved = list(range(every, last, every))
        for epoch in self.snapshots:
            if epoch < 1:
                raise ValueError(f"snapshots: epoch {epoch}: epochs count from 1")
            if epoch >= last:
                raise ValueError(
                    f"snapshots: epoch {epoch} is not before the last epoch (train.num_epochs = {last}); the "
                    "last model is in the ensemble already, a snapshot is an earlier epoch's"
                )
            if epoch % every:
                kept = ", ".join(map(str, saved[:3])) + (", ..." if len(saved) > 3 else "")
                raise ValueError(
                    f"snapshots: epoch {epoch} is not saved: training keeps the checkpoints of "
                    + (f"epoch{'s' if len(saved) > 1 else ''} {kept}" if saved else "no epoch")
                    + f" before train.num_epochs = {last} (train.checkpoint_every = {every})"
                )
        if len(set(self.snapshots)) != len(self.snapshots):
            raise ValueError(f"snapshots: epoch listed twice in {self.snapshots}")
        return self


def recipe_settings(config: ProtocolConfig) -> dict[str, Any]:
    """The settings a split's result depends on; a rerun into the same `out` must keep them.

    Paths are left out (the same data can be named in several ways), and so is what only changes speed;
    settings added later are left out at the value that reproduces runs made before them.
    """
    chosen = {"detect", "train", "flip", "distance"}
    if config.threshold_holdout:
        chosen |= {"threshold_holdout", "threshold_pairs"}
    if config.models > 1:
        chosen.add("models")
    if config.snapshots:
        chosen.add("snapshots")
    data = config.model_dump(mode="json", include=chosen)
    for key in ("data_dir", "checkpoint_dir", "device", "threads"):
        data["train"].pop(key, None)
    if not config.train.extra_negatives:
        data["train"].pop("extra_negatives")
    if config.train.lr_cycles == 1:
        data["train"].pop("lr_cycles")
    data["detect"].pop("workers", None)
    data["train"]["data"].pop("worker_timeout_s", None)  # how faces are read, not what is trained
    return data


def upgraded_recipe(stored: dict[str, Any]) -> dict[str, Any]:
    """A recipe an older version stored, spelt as `recipe_settings` spells it today: a plugin named by a plain
    name is a table (`miner = "hard"` is `{name = "hard"}`), and the settings that became constants are gone."""
    detect = stored.get("detect")
    if isinstance(detect, dict):
        stored = {
            **stored,
            "detect": {key: value for key, value in detect.items() if key not in DETECT_RETIRED},
        }
    train = stored.get("train")
    if not isinstance(train, dict):
        return stored
    train = {key: value for key, value in train.items() if key not in RETIRED[""]}
    for section, keys in RETIRED.items():
        if section and isinstance(train.get(section), dict):
            train[section] = {key: value for key, value in train[section].items() if key not in keys}
    for key in ("miner", "backbone", "loss"):
        if isinstance(train.get(key), str):
            train[key] = {"name": train[key]}
    if isinstance(train.get("miner_stages"), list):
        train["miner_stages"] = [
            {**stage, "miner": {"name": stage["miner"]}}
            if isinstance(stage, dict) and isinstance(stage.get("miner"), str)
            else stage
            for stage in train["miner_stages"]
        ]
    return {**stored, "train": train}


def changed_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two recipes (tables compared key by key)."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = set(before) | set(after)
        return [k for key in keys for k in changed_keys(before.get(key), after.get(key), f"{prefix}{key}.")]
    return [] if before == after else [prefix.rstrip(".")]
