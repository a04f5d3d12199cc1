"""Settings of every command as pydantic models: the one place where defaults live."""

from facetool.config.base import StrictModel, dump_toml, load_config, parse_override

__all__ = ["StrictModel", "dump_toml", "load_config", "parse_override"]
