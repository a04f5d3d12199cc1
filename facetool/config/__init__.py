"""Settings of every command as pydantic models: the one place where defaults live."""

from facetool.config.base import (
    ImageSize,
    StrictModel,
    build_config,
    dump_toml,
    field_help,
    load_config,
    parse_override,
)

__all__ = [
    "ImageSize",
    "StrictModel",
    "build_config",
    "dump_toml",
    "field_help",
    "load_config",
    "parse_override",
]
