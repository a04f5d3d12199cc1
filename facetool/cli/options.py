"""Command-line options generated from the settings models, so an option is written once: its key.

`setting_options(model, keys)` gives one `--dashed-key` option per setting key (dotted keys become
`--section-key`), typed as the field is, "not given" (None) by default, its help the field's description and
default (`field_help`); `command_with(func, params)` gives `func` the signature Typer reads, so a command takes
`**options` and passes them on by key.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from facetool.config.base import field_help, model_field


def option_name(key: str) -> str:
    """The one spelling of the option that sets `key`: dashes for underscores and dots."""
    return "--" + key.replace("_", "-").replace(".", "-")


def setting_options(
    model: type[BaseModel],
    keys: Sequence[str],
    *,
    names: Mapping[str, str] | None = None,
    helps: Mapping[str, str] | None = None,
) -> list[inspect.Parameter]:
    """One keyword parameter per setting key (`a.b` as `a__b`), each a Typer option named `names[key]` or
    `option_name(key)`, with the field's type, None meaning not given, and help from the model (or `helps`)."""
    params = []
    for key in keys:
        kind = model_field(model, key).annotation
        option = typer.Option(
            (names or {}).get(key, option_name(key)),
            help=(helps or {}).get(key) or field_help(model, key),
            show_default=False,
        )
        params.append(
            inspect.Parameter(
                key.replace(".", "__"),
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[kind | None, option],  # type: ignore[operator]
            )
        )
    return params


def given(options: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The setting options of `keys` as `build_config` takes them: dotted keys, None for not given."""
    return {key: options.get(key.replace(".", "__")) for key in keys}


def command_with(func: Callable[..., Any], params: Sequence[inspect.Parameter]) -> Callable[..., Any]:
    """`func` (taking `**options`) with the signature `params`, which is what Typer reads its options from."""
    func.__signature__ = inspect.Signature(list(params))  # type: ignore[attr-defined]
    return func
