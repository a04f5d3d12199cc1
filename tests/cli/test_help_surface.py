"""The command-line surface of every command and subcommand, found by walking the app's command tree: one dashed
spelling per option, help rendered whole and literally, no lab notes; and every option generated from a settings
model sets its setting."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import typer
from pydantic import BaseModel, ValidationError
from typer.core import TyperOption
from typer.main import get_command
from typer.testing import CliRunner

from facetool.cli import (
    clean,
    cluster,
    dataset,
    demo,
    detect,
    embed,
    evaluate,
    export,
    identify,
    protocol,
    train,
)
from facetool.cli import verify as verify_cli
from facetool.cli.app import app
from facetool.cli.options import given, option_name
from facetool.config.base import build_config, model_field
from facetool.config.dataset import FilterSettings
from facetool.config.demo import DemoConfig
from facetool.config.detect import DetectConfig
from facetool.config.evaluate import EmbedConfig, EvalConfig
from facetool.config.export import ExportConfig, VerifyConfig
from facetool.config.protocol import ProtocolConfig
from facetool.config.recognition import CleanConfig, ClusterConfig, GalleryConfig
from facetool.config.train import TrainConfig

WIDE = 10_000  # no help line is wrapped, so every help text can be found whole
LAB_NOTES = re.compile(r"fault drill|\d+(\.\d+)?\s*x slower|x slower|times slower|lab note", re.IGNORECASE)


def commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group of the app with its path, the root first."""
    command = command if command is not None else get_command(app)
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from commands(sub, (*path, name))


ALL = list(commands())
IDS = [" ".join(path) or "facetool" for path, _ in ALL]


def rendered_help(path: tuple[str, ...], command: Any) -> str:
    ctx = typer.Context(
        command, info_name=" ".join(("facetool", *path)), terminal_width=WIDE, max_content_width=WIDE
    )
    with contextlib.redirect_stdout(io.StringIO()) as printed:  # a help that prints itself is caught too
        text = command.get_help(ctx)
    text += printed.getvalue()
    assert text.strip() and (command.help or "").split()[:1] == text.split("\n\n")[1].split()[:1], text
    return text


def options_of(command: Any) -> list[Any]:
    return [p for p in command.params if isinstance(p, TyperOption)]


def test_the_walk_finds_every_command_group_and_subcommand():
    paths = {" ".join(path) for path, _ in ALL}
    assert {
        "detect",
        "train",
        "eval",
        "dataset filter",
        "dataset clean",
        "gallery build",
        "plugins list",
    } <= paths
    assert len(paths) >= 20, sorted(paths)


@pytest.mark.parametrize(("path", "command"), ALL, ids=IDS)
def test_help_lists_each_option_once_by_one_dashed_name(path: tuple[str, ...], command: Any):
    text = rendered_help(path, command)
    names = []
    for param in options_of(command):
        long_names = [name for name in param.opts if name.startswith("--")]
        assert len(long_names) == 1, f"{param.name}: one spelling per option, got {param.opts}"
        names += [*param.opts, *param.secondary_opts]
    assert len(names) == len(set(names)), names
    for name in names:
        assert "_" not in name, f"{name}: options are spelt with dashes"
        assert len(re.findall(rf"(?<![\w-]){re.escape(name)}(?![\w-])", listing(text))) == 1, name
    assert "…" not in text


def listing(text: str) -> str:
    """The names column of the Options section of a rendered help (no description, no help text)."""
    names, inside = [], False
    for line in text.splitlines():
        if line and not line[0].isspace():
            inside = line.startswith("Options")
        elif inside and line.strip().startswith("-"):
            names.append(re.split(r"\s{2,}", line.strip())[0])
    return "\n".join(names)


@pytest.mark.parametrize(("path", "command"), ALL, ids=IDS)
def test_help_shows_every_word_of_every_help_text_and_no_lab_notes(path: tuple[str, ...], command: Any):
    """Help is literal: `[train]`, `[detect]` or `[required]`-like words in a source text are not eaten as
    markup, and no text is cut."""
    text = rendered_help(path, command)
    words = set(text.split())
    sources = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
    for source in sources:
        missing = [word for word in source.split() if word not in words]
        assert not missing, f"lost from the help of {' '.join(path)}: {missing}"
    assert not LAB_NOTES.search(text), LAB_NOTES.search(text)


# --- every generated option sets its setting ------------------------------------------------------------------

CONFIGURED: dict[str, tuple[type[BaseModel], tuple[str, ...]]] = {
    "train": (TrainConfig, train.OPTIONS),
    "detect": (DetectConfig, detect.OPTIONS),
    "eval": (EvalConfig, evaluate.OPTIONS),
    "embed": (EmbedConfig, embed.OPTIONS),
    "export": (ExportConfig, export.OPTIONS),
    "protocol": (ProtocolConfig, protocol.OPTIONS),
    "verify": (VerifyConfig, verify_cli.OPTIONS),
    "demo": (DemoConfig, demo.OPTIONS),
    "dataset filter": (FilterSettings, dataset.FILTER_OPTIONS),
    "dataset clean": (CleanConfig, clean.OPTIONS),
    "gallery build": (GalleryConfig, identify.BUILD_OPTIONS),
    "identify": (GalleryConfig, identify.IDENTIFY_OPTIONS),
    "cluster": (ClusterConfig, cluster.OPTIONS),
}
COMMANDS = {" ".join(path): command for path, command in ALL}


def test_every_command_with_settings_is_checked():
    """A command that takes `--set` (or is known to build a settings model) is in CONFIGURED, and every option
    of it named like a setting of its model is one of its generated options."""
    with_sets = {
        name for name, command in COMMANDS.items() if any("--set" in p.opts for p in options_of(command))
    }
    assert with_sets <= set(CONFIGURED), with_sets - set(CONFIGURED)
    for name, (model, keys) in CONFIGURED.items():
        dests = {p.name for p in options_of(COMMANDS[name])}
        assert {key.replace(".", "__") for key in keys} <= dests, name
        assert set(model.model_fields) & dests <= set(keys), name


def _plain(kind: Any) -> Any:
    """The type of a field without None."""
    if get_origin(kind) in (Union, type(int | None)):
        kinds = [k for k in get_args(kind) if k is not type(None)]
        return kinds[0]
    return kind


def _candidates(kind: Any) -> list[Any]:
    if get_origin(kind) is Literal:
        return list(get_args(kind))
    if kind is bool:
        return [True, False]
    if kind is int:
        return [3, 2, 17, 5, 20, 30, 96, 112, 1]
    if kind is float:
        return [0.3, 0.25, 0.9, 1.5, 0.01, 2.0]
    if kind is str:
        return ["cpu", "1/3", "custom"]
    if kind is Path:
        return [Path("somewhere/file.x")]
    if get_origin(kind) is list:
        item = get_args(kind)[0]
        return [[Path("a.txt"), Path("b.txt")] if item is Path else [2, 3]]
    raise AssertionError(f"no sample value for {kind}")


def sample(model: type[BaseModel], key: str) -> Any:
    """A value of setting `key` that the model accepts and that is not its default."""
    default = model().model_dump()[key] if key in model.model_fields else None
    for value in _candidates(_plain(model_field(model, key).annotation)):
        if value == default:
            continue
        try:
            model.model_validate({key: value})
        except ValidationError:
            continue
        return value
    raise AssertionError(f"{model.__name__}.{key}: no sample value")


def _arguments(command: Any, options: list[str]) -> list[str]:
    """The command line: the required arguments and options filled with a placeholder, then `options`."""
    args = []
    for param in command.params:
        if param.required and isinstance(param, TyperOption):
            args += [param.opts[0], "x"]
        elif param.required:
            args.append("x")
    return [*args, *options]


def _option_args(command: Any, key: str, value: Any) -> list[str]:
    param = next(p for p in options_of(command) if p.name == key.replace(".", "__"))
    if isinstance(value, bool):
        return [param.opts[0] if value else param.secondary_opts[0]]
    if isinstance(value, list):
        return [a for item in value for a in (param.opts[0], str(item))]
    return [param.opts[0], str(value)]


ROUND_TRIPS = [(name, key) for name, (_, keys) in CONFIGURED.items() for key in keys]


@pytest.mark.parametrize(("name", "key"), ROUND_TRIPS, ids=[f"{n}:{k}" for n, k in ROUND_TRIPS])
def test_an_option_sets_its_setting(name: str, key: str):
    """`--opt value` as the command parses it gives the setting `value`; unparsed, the model's default."""
    model, keys = CONFIGURED[name]
    command = COMMANDS[name]
    value = sample(model, key)
    ctx = command.make_context(name, _arguments(command, _option_args(command, key, value)))
    config = build_config(model, None, None, given(ctx.params, keys))
    assert getattr(config, key) == value
    untouched = command.make_context(name, _arguments(command, []))
    assert given(untouched.params, keys) == dict.fromkeys(keys), "an option not given is None"


def test_an_underscore_spelling_is_not_an_option():
    done = CliRunner().invoke(app, ["detect", "x", "--image_size", "96"])
    assert done.exit_code == 2 and "No such option: --image_size" in done.output
    assert option_name("train.image_size") == "--train-image-size"
