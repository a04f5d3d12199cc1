"""Finding the checkpoint to resume from and the configuration a resumed run continues with.

A resumed run writes only where the user said: into `--checkpoint-dir` when given, else beside the checkpoint
named by `--resume`. The run folder recorded inside a checkpoint is never used, so a copied checkpoint cannot
overwrite the run it came from, nor a crafted one choose where facetool writes or deletes files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from facetool.config.base import format_validation_error, load_config, named_tables, set_dotted
from facetool.config.train import TrainConfig
from facetool.errors import ConfigError, FacetoolError
from facetool.models import available_backbones
from facetool.models.checkpoint import load_checkpoint


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run directory: last.pth, else the highest epoch_NNNN.pth; None if none."""
    last = run_dir / "last.pth"
    if last.is_file():
        return last
    epochs = sorted(run_dir.glob("epoch_[0-9][0-9][0-9][0-9].pth"))
    return epochs[-1] if epochs else None


def resolve_resume(spec: str | Path | None, run_dir: Path) -> Path | None:
    """`auto` -> the newest checkpoint in the run directory (None when there is none yet); a path -> itself."""
    if spec is None:
        return None
    if str(spec) == "auto":
        return find_resume_checkpoint(run_dir)
    path = Path(spec)
    if not path.is_file():
        raise FacetoolError(f"{path}: checkpoint to resume from not found")
    return path


def load_train_config(
    path: Path | None, overrides: Iterable[tuple[str, Any]] = (), resume: str | Path | None = None
) -> TrainConfig:
    """The run's configuration: the config file if given (its `[train]` table when it has one, as a protocol
    recipe does, else its top level); when resuming without one, the run's own.

    Resuming from a checkpoint path reuses the configuration stored in it, with the run folder set to the
    checkpoint's folder; `auto` reuses the run directory's config.toml. Overrides win in every case.
    """
    overrides = [(key.replace("-", "_"), value) for key, value in overrides]
    if path is not None or resume is None:
        return load_config(TrainConfig, path, overrides, section="train")
    if str(resume) == "auto":
        run_dir = load_config(TrainConfig, None, overrides).checkpoint_dir
        saved = Path(run_dir) / "config.toml"
        return load_config(TrainConfig, saved if saved.is_file() else None, overrides)
    stored = load_checkpoint(resume)["config"]
    if not isinstance(stored, dict):
        raise ConfigError(f"{resume}: checkpoint field 'config' is {type(stored).__name__}, not a table")
    data = dict(stored)
    data["checkpoint_dir"] = str(Path(resume).absolute().parent)
    for key, value in overrides:
        try:
            set_dotted(data, key, value, named_tables(TrainConfig))
        except ConfigError as exc:
            raise ConfigError(f"{resume} (its stored config): {exc}") from None
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{resume} (its stored config)")) from None
    installed = available_backbones()
    if config.backbone.name not in installed:
        raise ConfigError(
            f"{resume}: the checkpoint's backbone {config.backbone.name!r} is not installed "
            f"(installed: {', '.join(installed)})"
        )
    return config
