"""Command-line options generated from the settings models, so an option is written once: its key.

`setting_options(model, keys)` gives one `--dashed-key` option per setting key (dotted keys become
`--section-key`), typed as the field is, "not given" (None) by default, its help the field's description and
default (`field_help`): a bool setting is a `--key/--no-key` flag, a list setting a repeatable option.
`option` and `argument` declare what is not a setting (positional inputs, output paths, --config, --set,
--json); `command_with(func, params)` gives `func` the signature Typer reads, so a command takes `**options`
and passes the settings on by key (`given`).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel

from facetool.config.base import field_help, model_field

Names = str | tuple[str, ...]
"""An option's spellings: its one long name, optionally followed by a short one (`("--output", "-o")`)."""


def option_name(key: str) -> str:
    """The one spelling of the option that sets `key`: dashes for underscores and dots."""
    return "--" + key.replace("_", "-").replace(".", "-")


def cli_type(annotation: Any) -> Any:
    """The type a setting's option parses: a Literal's values as their plain type (the model checks the choice
    and names the allowed values), unions and lists item by item."""
    origin = get_origin(annotation)
    if origin is Literal:
        return type(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        parts = tuple(dict.fromkeys(cli_type(arg) for arg in get_args(annotation)))
        return Union[parts]  # noqa: UP007 - built from a tuple of types
    if origin is list:
        return list[cli_type(get_args(annotation)[0])]  # type: ignore[misc]
    return annotation


def _is(kind: Any, wanted: type) -> bool:
    return kind is wanted or wanted in get_args(kind) or get_origin(kind) is wanted


def setting_options(
    model: type[BaseModel],
    keys: Sequence[str],
    *,
    names: Mapping[str, Names] | None = None,
    helps: Mapping[str, str] | None = None,
    metavars: Mapping[str, str] | None = None,
) -> list[inspect.Parameter]:
    """One keyword parameter per setting key (`a.b` as `a__b`), each a Typer option named `names[key]` or
    `option_name(key)`, with the field's type, None meaning not given, and help from the model (or `helps`).

    A bool setting is `--key/--no-key`; a list setting is repeatable, each use one item."""
    params = []
    for key in keys:
        kind = cli_type(model_field(model, key).annotation)
        decls = (names or {}).get(key, option_name(key))
        decls = (decls,) if isinstance(decls, str) else tuple(decls)
        words = (helps or {}).get(key) or field_help(model, key)
        if _is(kind, bool):
            decls = (f"{decls[0]}/--no-{decls[0].removeprefix('--')}", *decls[1:])
        if _is(kind, list):
            words = f"{words} Repeatable.".strip()
        info: dict[str, Any] = {"help": words, "show_default": False}
        if metavars and key in metavars:
            info["metavar"] = metavars[key]
        params.append(option(key.replace(".", "__"), kind | None, *decls, **info))
    return params


def option(name: str, kind: Any, *decls: str, default: Any = None, **info: Any) -> inspect.Parameter:
    """A keyword parameter `name` that Typer reads as the option `decls` (what is not a setting)."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[kind, typer.Option(*decls, **info)],
    )


def argument(
    name: str, kind: Any, *, default: Any = inspect.Parameter.empty, **info: Any
) -> inspect.Parameter:
    """A positional argument `name` (required unless it has a default)."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[kind, typer.Argument(**info)],
    )


def given(options: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The setting options of `keys` as `build_config` takes them: dotted keys, None for not given (a repeatable
    option used no time, whether the parser gives None or an empty sequence)."""
    values = {key: options.get(key.replace(".", "__")) for key in keys}
    return {
        key: None if isinstance(value, list | tuple) and not value else value for key, value in values.items()
    }


def command_with(func: Callable[..., Any], params: Sequence[inspect.Parameter]) -> Callable[..., Any]:
    """`func` (taking `**options`) with the signature `params`, which is what Typer reads its options from."""
    func.__signature__ = inspect.Signature(list(params))  # type: ignore[attr-defined]
    return func
