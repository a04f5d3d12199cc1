"""Errors a user can cause. The CLI prints them as one line; library callers can catch them."""


class FacetoolError(Exception):
    """A failure caused by input or environment, reported as one readable line (exit code 1)."""

    exit_code = 1


class UsageError(FacetoolError):
    """A wrong option, config key or value: exit code 2, like any command-line usage error."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration that does not validate; the message names the file and the key."""


class CacheError(FacetoolError):
    """A face cache that cannot be used: not a cache, another format version, truncated or corrupted."""


class ModelFileError(FacetoolError):
    """A model or weights file that is missing or unusable; the message names every place looked in."""


class PairsError(FacetoolError):
    """A malformed pairs file or pairs that name images missing from the data."""


class PluginError(FacetoolError):
    """A plugin that cannot be found, loaded, or that broke its interface contract."""
