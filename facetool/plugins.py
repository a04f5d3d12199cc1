"""Entry-point registries for miners and backbones.

Built-in miners and backbones register through facetool's own `pyproject.toml` in the same groups a third-party
package uses, so there is one lookup path for all. Discovery is cached per group; `clear_cache()` forgets it
(tests that install a distribution on the fly re-discover after calling it).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as metadata
from dataclasses import asdict, dataclass
from typing import Any

from facetool.errors import PluginError

MINERS = "facetool.miners"
BACKBONES = "facetool.backbones"
GROUPS: dict[str, str] = {MINERS: "miner", BACKBONES: "backbone"}


@dataclass(frozen=True)
class PluginInfo:
    """One registered name as `facetool plugins list` shows it."""

    kind: str
    name: str
    package: str
    version: str
    target: str
    description: str
    status: str
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        return asdict(self)


def _dist_name(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or dist.name, dist.version or "?"


@functools.cache
def _entry_points(group: str) -> dict[str, tuple[metadata.EntryPoint, ...]]:
    found: dict[str, list[metadata.EntryPoint]] = {}
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name, []).append(ep)
    return {name: tuple(eps) for name, eps in sorted(found.items())}


def clear_cache() -> None:
    """Forget what was discovered, so newly installed distributions are seen."""
    _entry_points.cache_clear()
    _load.cache_clear()
    importlib.invalidate_caches()


def _check_group(group: str) -> str:
    if group not in GROUPS:
        raise ValueError(f"unknown plugin group {group!r}; expected one of {', '.join(GROUPS)}")
    return GROUPS[group]


def available(group: str) -> list[str]:
    """Names registered in `group`, sorted (clashing and broken ones included)."""
    _check_group(group)
    return list(_entry_points(group))


def _clash_message(kind: str, name: str, eps: tuple[metadata.EntryPoint, ...]) -> str:
    who = " and ".join(f"{pkg} {ver} ({ep.value})" for ep in eps for pkg, ver in [_dist_name(ep)])
    return f"{kind} {name!r} is registered by more than one package: {who}; uninstall one of them"


@functools.cache
def _load(group: str, name: str) -> Any:
    kind = _check_group(group)
    registry = _entry_points(group)
    eps = registry.get(name)
    if eps is None:
        choices = ", ".join(registry) or "(none installed)"
        raise PluginError(f"unknown {kind} {name!r}; available: {choices}")
    if len(eps) > 1:
        raise PluginError(_clash_message(kind, name, eps))
    ep = eps[0]
    try:
        return ep.load()
    except Exception as exc:
        package, version = _dist_name(ep)
        raise PluginError(
            f"{kind} {name!r} from {package} {version} failed to load ({ep.value}): {type(exc).__name__}: {exc}"
        ) from exc


def load_plugin(group: str, name: str) -> Any:
    """The object an entry point names (a Miner subclass or a backbone factory).

    Raises PluginError for an unknown name (listing the available ones), a name registered by two packages
    (naming both), or an entry point that fails to import (with the error).
    """
    return _load(group, name)


def _describe(obj: Any) -> str:
    text = getattr(obj, "description", None)
    if not isinstance(text, str) or not text.strip():
        text = getattr(obj, "__doc__", None) or ""
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def list_plugins(group: str | None = None) -> list[PluginInfo]:
    """Every registered miner and backbone with package, version, description and status.

    Status is `ok`, `broken` (the import error is in `error`) or `clash` (the packages are in `error`); listing
    never raises for a bad plugin.
    """
    groups = [group] if group is not None else list(GROUPS)
    rows: list[PluginInfo] = []
    for grp in groups:
        kind = _check_group(grp)
        for name, eps in _entry_points(grp).items():
            status, error, description = "ok", None, ""
            if len(eps) > 1:
                status, error = "clash", _clash_message(kind, name, eps)
            else:
                try:
                    description = _describe(_load(grp, name))
                except PluginError as exc:
                    status, error = "broken", str(exc)
            for ep in eps:
                package, version = _dist_name(ep)
                rows.append(PluginInfo(kind, name, package, version, ep.value, description, status, error))
    return rows
