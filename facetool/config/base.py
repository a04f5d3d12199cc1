"""Loading settings from TOML files, `--set key=value` overrides and command-line options, with errors that
name the file and the key. The one path from a command's options to its validated settings is `build_config`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUndefined

from facetool.errors import ConfigError, FacetoolError
from facetool.files import read_text_limited

M = TypeVar("M", bound=BaseModel)

CONFIG_READ_LIMIT = 1024 * 1024
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024

ImageSize = Annotated[int, Field(ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)]
"""Side of a square face image in pixels: every image-size setting uses it, so none can ask for a tensor that
cannot fit in memory (the detector crops and the backbones are trained at 96-256)."""


class StrictModel(BaseModel):
    """Base of every settings model: unknown keys are errors, values are checked on assignment too.

    No float setting accepts nan or inf; a field that means to says so with `Field(allow_inf_nan=True)`.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


class NoSettings(StrictModel):
    """The settings model of a plugin without settings of its own: any key is an error."""


def plugin_settings(model: type[M], settings: Mapping[str, Any] | None, *, key: str, plugin: str) -> M:
    """A plugin's table (`[loss]`, `[miner]`, `[backbone]`, `[callbacks.NAME]`) validated by the plugin's own
    `Settings` model.

    A bad key is one ConfigError naming `key.KEY` and the plugin, e.g.
    `loss.scale: Input should be greater than 0 (loss 'arcface')`.
    """
    try:
        return model.model_validate(dict(settings or {}))
    except ValidationError as exc:
        message = format_validation_error(exc, "settings").replace("settings: ", f"{key}.")
        raise ConfigError(f"{message} ({plugin})") from None


class NamedTable(StrictModel):
    """A setting that picks a plugin by `name` and holds the plugin's own keys beside it, for the plugin to check.

    Written as the name alone (`loss = "arcface"`) or as a table (`[loss]` with `name = "arcface"` and e.g.
    `scale = 32.0`); `--set loss=arcface --set loss.scale=32` builds the same table.
    """

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, description="The plugin (facetool plugins list).")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def settings(self) -> dict[str, Any]:
        """The plugin's own settings: every key of the table but `name`."""
        return dict(self.model_extra or {})

    @property
    def label(self) -> str:
        """The name, with the settings given in parentheses when there are any (`distance-weighted(cutoff=0.7)`),
        as logs and histories show the choice."""
        given = ",".join(f"{key}={value}" for key, value in sorted(self.settings.items()))
        return f"{self.name}({given})" if given else self.name


def refuse_retired(data: Any, retired: Mapping[str, str]) -> Any:
    """A model's before-validator for the settings that became constants: naming one is an error that says it
    was retired and why (`retired` maps each key to the reason), rather than a plain "unknown key"."""
    if isinstance(data, dict):
        for key, why in retired.items():
            if key in data:
                raise PydanticCustomError("retired", "retired: {why}; remove it", {"key": key, "why": why})
    return data


def named_tables(model: type[BaseModel], prefix: str = "") -> set[str]:
    """The dotted keys of `model`'s NamedTable settings, nested sections included."""
    found: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, NamedTable):
            found.add(prefix + name)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= named_tables(annotation, f"{prefix}{name}.")
    return found


def parse_override(text: str) -> tuple[str, Any]:
    """Split `key=value`; the value is read as a TOML literal when it is one, else kept as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected key=value")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def set_dotted(data: dict[str, Any], key: str, value: Any, named: Iterable[str] = ()) -> None:
    """Set `a.b.c` in nested dicts, making the missing tables; ConfigError when `a` or `b` is a value.

    `named` are the dotted keys of NamedTable settings: there a plugin name is the table's `name`, so a key
    set below a name (`loss=arcface`, then `loss.scale=32`) extends its table; a name set over a table keeps
    its keys unless the table names another plugin (whose keys they are).
    """
    named = set(named)
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1], start=1):
        child = node.setdefault(part, {})
        if isinstance(child, str) and ".".join(parts[:depth]) in named:
            child = node[part] = {"name": child}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    last = parts[-1]
    table = node.get(last)
    if (
        key in named
        and isinstance(value, str)
        and isinstance(table, dict)
        and table.get("name", value) == value
    ):
        node[last] = {**table, "name": value}
    else:
        node[last] = value


def _name_defaults(data: dict[str, Any], model: type[BaseModel], named: set[str]) -> None:
    """Give a plugin table that names no plugin the model's default table under its keys, so that
    `--set loss.margin=soft` (or a `[loss]` table of settings alone) changes one key of a default
    `{name = "batch-hard", margin = "hinge"}` instead of falling back to the table class's bare default."""
    for table in sorted(named):
        *parents, last = table.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not (isinstance(node, dict) and isinstance(node.get(last), dict) and "name" not in node[last]):
            continue
        default = field_default(model, table)
        if isinstance(default, NamedTable):
            node[last] = {"name": default.name, **default.settings, **node[last]}


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file of at most CONFIG_READ_LIMIT bytes (a UTF-8 BOM is dropped); errors name the file."""
    try:
        text = read_text_limited(path, limit=CONFIG_READ_LIMIT, what="config file")
    except FacetoolError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: `source: key: message` (a key with control characters shown as a Python literal)."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if not key.isprintable():
            key = repr(key)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "retired":
            key = ".".join([*(str(p) for p in err["loc"]), err["ctx"]["key"]])
        lines.append(f"{source}: {key}: {message}")
    return "; ".join(lines)


def load_config(
    model: type[M],
    path: Path | None = None,
    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    section: str | None = None,
) -> M:
    """Build `model` from an optional TOML file and overrides.

    With `section`, the file's `[section]` table is read when it has one, else its top level, so one file
    can hold the settings of several commands and a file of one command's keys works too; likewise an override
    may spell its key with the section in front (`detect.align=five-point` for `facetool detect`, as for the
    commands whose `detect` settings are a nested section).

    Overrides win over the file; dotted keys reach nested sections. Any problem raises ConfigError
    naming the file (or "command line") and the key.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        data = read_toml(Path(path))
        source = str(path)
        if section is not None and section in data:
            data = data[section]
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    from_cli = False
    named = named_tables(model)
    prefix = f"{section}." if section is not None else None
    for key, value in items:
        key = key.replace("-", "_")
        if prefix is not None and key.startswith(prefix) and section not in model.model_fields:
            key = key[len(prefix) :]
        set_dotted(data, key, value, named)
        from_cli = True
    _name_defaults(data, model, named)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where = f"{source} (with command-line overrides)" if from_cli and path else source
        if from_cli and not path:
            where = "command line"
        raise ConfigError(format_validation_error(exc, where)) from None


def build_config(
    model: type[M],
    path: Path | None = None,
    sets: Iterable[str] | None = None,
    given: Mapping[str, Any] | None = None,
    *,
    section: str | None = None,
) -> M:
    """The validated settings of a command: the model's defaults < the TOML file < `--set` < explicit options.

    `sets` are the raw `key=value` texts of `--set`; `given` maps setting keys (dotted for nested ones) to the
    values of the command's own options, None meaning "not given" (paths are passed on as text). Errors are one
    ConfigError naming the file or "command line" and the key.
    """
    return load_config(model, path, collect_overrides(sets, given), section=section)


def collect_overrides(sets: Iterable[str] | None, given: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """`--set key=value` texts, then the command's explicitly given options, as (key, value) overrides."""
    overrides = [parse_override(text) for text in sets or ()]
    for key, value in (given or {}).items():
        if value is not None:
            overrides.append((key, _plain(value)))
    return overrides


def _plain(value: Any) -> Any:
    """An option's value as TOML would give it: paths as text, lists item by item."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def field_default(model: type[BaseModel], key: str) -> Any:
    """The default of setting `key` (dotted for nested models), for code that must not type it again."""
    field = _field(model, key)
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    if field.default is PydanticUndefined:
        raise KeyError(f"{key}: {model.__name__} gives it no default")
    return field.default


def model_field(model: type[BaseModel], key: str) -> FieldInfo:
    """The field of setting `key` (dotted for nested models); KeyError when there is none."""
    return _field(model, key)


def _field(model: type[BaseModel], key: str) -> FieldInfo:
    owner: type[BaseModel] = model
    *parents, name = key.split(".")
    for part in parents:
        annotation = owner.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise KeyError(f"{key}: {part} is not a section of {model.__name__}")
        owner = annotation
    return owner.model_fields[name]


def field_help(model: type[BaseModel], key: str, text: str | None = None) -> str:
    """Help text for the option that sets `key` (dotted for nested models): its description and its default.

    The option itself defaults to None ("not given"), so the default shown is the model's, the only place
    defaults live.
    """
    field = _field(model, key)
    words = text if text is not None else (field.description or "")
    if field.default is not PydanticUndefined and field.default is not None:
        default = field.default
    elif field.default_factory is not None:
        default = field.default_factory()  # type: ignore[call-arg]
    else:
        return words
    if isinstance(default, BaseModel) or (isinstance(default, list | dict | tuple) and not default):
        return words
    shown = str(default) if not isinstance(default, bool) else str(default).lower()
    return f"{words} (default: {shown})".strip()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{"
            + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
            + "}"
        )
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_key(key: str) -> str:
    """A bare key where TOML allows one, else a quoted key (`"pkg:name"`)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def dump_toml(data: Mapping[str, Any]) -> str:
    """Write a plain mapping (scalars, lists, nested tables; None values omitted) as TOML text."""
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, Mapping) and v is not None]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    out = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars]

    def emit(prefix: str, table: Mapping[str, Any]) -> None:
        out.append("")
        out.append(f"[{prefix}]")
        inner_tables = []
        for k, v in table.items():
            if isinstance(v, Mapping):
                inner_tables.append((k, v))
            elif v is not None:
                out.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in inner_tables:
            emit(f"{prefix}.{_toml_key(k)}", v)

    for k, v in tables:
        emit(_toml_key(k), v)
    return "\n".join(out).lstrip("\n") + "\n"
