"""Entry-point registries for miners, backbones, losses, training callbacks and face detectors: one lookup for every group, filterable listings.

Built-in plugins register through facetool's own `pyproject.toml` in the same groups a third-party package
uses, so there is one lookup path for all. `BUILTINS` holds the same names and is what facetool's own names
resolve to, so they work where the install metadata is missing or stale (a source tree on `PYTHONPATH`, an
editable install of an older checkout); a test keeps the two equal.
A group is one row of `GROUPS`; adding a group adds no code.

Every kind has one shape: the entry point gives a class (or factory) whose pydantic `Settings` model checks the
plugin's own table (`[loss]`, `[miner]`, `[backbone]`, `[callbacks.NAME]`), and `resolve` turns a name and its
table into the object to call and the settings to call it with. A `PluginAlias` keeps an older name working
as another plugin with some settings (`tiny-cnn-gdc` is `tiny-cnn` with `head = "gdc"`).

A name is either plain (`semihard`) or qualified by the distribution that provides it (`facetool:semihard`);
the qualified form resolves a name clash between two installed packages without uninstalling either. Loading
a plugin runs its code: whatever it raises, `sys.exit()` and other BaseExceptions included (Ctrl-C excepted),
becomes a one-line PluginError naming the plugin. What a plugin prints while it loads goes to stderr, so
stdout stays what the command prints (`--json` stays JSON).

Discovery is cached per group; `clear_cache()` forgets it (tests that install a distribution on the fly
re-discover after calling it).
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import importlib
import importlib.metadata as metadata
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from facetool.errors import FacetoolError, PluginError

MINERS = "facetool.miners"
BACKBONES = "facetool.backbones"
LOSSES = "facetool.losses"
CALLBACKS = "facetool.callbacks"
DETECTORS = "facetool.detectors"
GROUPS: dict[str, str] = {
    MINERS: "miner",
    BACKBONES: "backbone",
    LOSSES: "loss",
    CALLBACKS: "callback",
    DETECTORS: "detector",
}
QUALIFIER = ":"
OWN = "facetool"

BUILTINS: dict[str, dict[str, str]] = {
    MINERS: {
        "semihard": "facetool.miners.semihard:SemiHardMiner",
        "semihard-strict": "facetool.miners.semihard_strict:StrictSemiHardMiner",
        "hard": "facetool.miners.hard:HardMiner",
        "random": "facetool.miners.random_negative:RandomMiner",
    },
    BACKBONES: {"inception_resnet_v1": "facetool.models.inception:build_inception_resnet_v1"},
    LOSSES: {"triplet": "facetool.losses.triplet:TripletLoss"},
    CALLBACKS: {
        "csv": "facetool.training.metrics_csv:CsvLogger",
        "tensorboard": "facetool.training.tensorboard_log:TensorBoardLogger",
        "early-stopping": "facetool.training.early_stopping:EarlyStopping",
        "verification": "facetool.training.verification_sets:VerificationSets",
    },
    DETECTORS: {
        "ssd": "facetool.detection.ssd:SsdDetector",
        "mtcnn": "facetool.detection.mtcnn:MtcnnDetector",
    },
}

T = TypeVar("T")


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

    @property
    def qualified_name(self) -> str:
        """`package:name`, the spelling that picks this package's plugin when names clash."""
        return f"{self.package}{QUALIFIER}{self.name}"

    def as_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        return {**asdict(self), "qualified_name": self.qualified_name}


def _dist_name(ep: metadata.EntryPoint) -> tuple[str, str]:
    """The providing distribution's name and version; a distribution whose metadata lacks them (or cannot be
    read) is named after its `NAME-VERSION.dist-info` folder, else "?"."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        if ep.value.startswith(f"{OWN}."):
            from facetool import __version__

            return OWN, __version__
        return "?", "?"
    try:
        name, version = dist.metadata["Name"], dist.metadata["Version"]
    except Exception:
        name = version = None
    if not name:
        folder = getattr(dist, "_path", None)  # PathDistribution's dist-info folder
        name = Path(str(folder)).name.partition("-")[0] if folder is not None else None
    return str(name or "?"), str(version or "?")


def _normalized(package: str) -> str:
    """A distribution name compared the packaging way: case and runs of `-_.` do not matter."""
    return re.sub(r"[-_.]+", "-", package).lower()


@functools.cache
def _entry_points(group: str) -> dict[str, tuple[metadata.EntryPoint, ...]]:
    found: dict[str, list[metadata.EntryPoint]] = {}
    for ep in metadata.entry_points(group=group):
        if _normalized(_dist_name(ep)[0]) != OWN:  # facetool's own come from BUILTINS, whatever is installed
            found.setdefault(ep.name, []).append(ep)
    for name, value in BUILTINS.get(group, {}).items():
        found.setdefault(name, []).append(metadata.EntryPoint(name=name, value=value, group=group))
    return {name: tuple(eps) for name, eps in sorted(found.items())}


def clear_cache() -> None:
    """Forget what was discovered, so newly installed distributions are seen."""
    _entry_points.cache_clear()
    _load.cache_clear()
    importlib.invalidate_caches()


def kind_of(group: str) -> str:
    """The singular word for a group's plugins (`miner`, `backbone`, `loss`); ValueError for an unknown group."""
    if group not in GROUPS:
        raise ValueError(f"unknown plugin group {group!r}; expected one of {', '.join(GROUPS)}")
    return GROUPS[group]


def available(group: str) -> list[str]:
    """Names registered in `group`, sorted (clashing and broken ones included)."""
    kind_of(group)
    return list(_entry_points(group))


def _clash_message(kind: str, name: str, eps: tuple[metadata.EntryPoint, ...]) -> str:
    who = " and ".join(f"{pkg} {ver} ({ep.value})" for ep in eps for pkg, ver in [_dist_name(ep)])
    choices = " or ".join(f"'{_dist_name(ep)[0]}{QUALIFIER}{name}'" for ep in eps)
    return f"{kind} {name!r} is registered by more than one package: {who}; name one of them as {choices}"


def lookup(group: str, name: str) -> metadata.EntryPoint:
    """The one entry point `name` (plain or `package:name`) means in `group`, without loading it.

    PluginError for an unknown name (listing the available ones), an unknown package, or a plain name that
    two packages register (naming both and the qualified names that pick one).
    """
    kind = kind_of(group)
    registry = _entry_points(group)
    eps = registry.get(name)
    if eps is None and QUALIFIER in name:
        package, _, plain = name.partition(QUALIFIER)
        eps = tuple(
            ep for ep in registry.get(plain, ()) if _normalized(_dist_name(ep)[0]) == _normalized(package)
        )
        if not eps:
            providers = ", ".join(f"{_dist_name(ep)[0]}{QUALIFIER}{plain}" for ep in registry.get(plain, ()))
            hint = f"; registered: {providers}" if providers else ""
            raise PluginError(
                f"unknown {kind} {name!r}: package {package!r} registers no {kind} {plain!r}{hint}"
            )
    if eps is None:
        choices = ", ".join(registry) or "(none installed)"
        raise PluginError(f"unknown {kind} {name!r}; available: {choices}")
    if len(eps) > 1:
        raise PluginError(_clash_message(kind, name, eps))
    return eps[0]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def call_plugin(what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run plugin code; whatever it raises, `sys.exit()` and other BaseExceptions included (pytest's
    `importorskip` raises one), becomes a one-line PluginError about `what`.

    KeyboardInterrupt passes through: it is the user's, not the plugin's. So do facetool's own errors (a
    missing weights file a backbone factory reports): they already name what is wrong in one line.
    """
    try:
        return func(*args, **kwargs)
    except (FacetoolError, KeyboardInterrupt):
        raise
    except SystemExit as exc:
        raise PluginError(f"{what}: the plugin called sys.exit({exc.code!r})") from None
    except BaseException as exc:
        raise PluginError(_one_line(f"{what}: {type(exc).__name__}: {exc}")) from exc


def _quietly(func: Callable[[], T]) -> Callable[[], T]:
    """`func` with whatever it prints sent to stderr instead of stdout."""

    def run() -> T:
        with contextlib.redirect_stdout(sys.stderr):
            return func()

    return run


@functools.cache
def _load(group: str, name: str) -> Any:
    ep = lookup(group, name)
    package, version = _dist_name(ep)
    return call_plugin(
        f"{kind_of(group)} {name!r} from {package} {version} failed to load ({ep.value})", _quietly(ep.load)
    )


def plugin_class(group: str, name: str, base: type[T], spelled: str) -> type[T]:
    """The class registered as `name` in `group`, which must subclass `base` (`spelled` is how the error names
    it); PluginError naming the plugin otherwise."""
    target = load_plugin(group, name)
    if not (isinstance(target, type) and issubclass(target, base)):
        raise PluginError(
            f"{kind_of(group)} {name!r}: entry point gives {target!r}, not a {spelled} subclass"
        )
    return target


def load_plugin(group: str, name: str) -> Any:
    """The object an entry point names (a Miner subclass, a backbone factory, a loss).

    Raises PluginError for an unknown name (listing the available ones), a name registered by two packages
    (naming both), or an entry point that fails to import (with the error, or the exit the plugin attempted).
    """
    return _load(group, name)


def _describe(obj: Any) -> str:
    text = getattr(obj, "description", None)
    if not isinstance(text, str) or not text.strip():
        text = getattr(obj, "__doc__", None) or ""
    if not isinstance(text, str):
        return ""
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


@dataclass(frozen=True)
class PluginAlias:
    """A name kept for plugin `target` with `settings`: what an entry point gives for an older name.

    `tiny-cnn-gdc = "facetool_extras.tiny_cnn:TINY_CNN_GDC"` with `TINY_CNN_GDC = PluginAlias("tiny-cnn", {"head":
    "gdc"})` makes configs, recipes and checkpoints that say `tiny-cnn-gdc` build exactly what they built before.
    A plain `target` means the alias's own package's plugin.
    """

    target: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """What `facetool plugins list` shows for the alias."""
        given = ", ".join(f"{key} = {value!r}" for key, value in self.settings.items())
        return f"alias of {self.target}" + (f" with {given}" if given else "")


def resolve(
    group: str, name: str, settings: Mapping[str, Any] | None = None
) -> tuple[str, Any, dict[str, Any]]:
    """The plugin `name` means in `group` with its table `settings`: (name, loaded object, settings).

    An alias gives its target's name and object, and its own settings under the ones given (a key the user
    writes wins). PluginError as `load_plugin`, and for an alias whose target is another alias.
    """
    table = dict(settings or {})
    found = load_plugin(group, name)
    if not isinstance(found, PluginAlias):
        return name, found, table
    target = found.target
    package = _dist_name(lookup(group, name))[0]
    qualified = target if QUALIFIER in target or package == "?" else f"{package}{QUALIFIER}{target}"
    obj = load_plugin(group, qualified)
    if isinstance(obj, PluginAlias):
        raise PluginError(f"{kind_of(group)} {name!r} is an alias of {target!r}, itself an alias")
    return target, obj, {**found.settings, **table}


def list_plugins(
    group: str | None = None, *, pattern: str | None = None, package: str | None = None
) -> list[PluginInfo]:
    """Registered plugins with package, version, description and status, optionally filtered.

    `group` keeps one group; `pattern` is a shell-style pattern on the name (`semi*`); `package` keeps one
    distribution. Status is `ok`, `broken` (the import error is in `error`) or `clash` (the packages are in
    `error`); listing never raises for a bad plugin.
    """
    groups = [group] if group is not None else list(GROUPS)
    rows: list[PluginInfo] = []
    for grp in groups:
        kind = kind_of(grp)
        for name, eps in _entry_points(grp).items():
            if pattern is not None and not fnmatch.fnmatchcase(name, pattern):
                continue
            for ep in eps:
                pkg, version = _dist_name(ep)
                if package is not None and _normalized(pkg) != _normalized(package):
                    continue
                status, error, description = "ok", None, ""
                if len(eps) > 1:
                    status, error = "clash", _clash_message(kind, name, eps)
                try:
                    obj = _load(grp, f"{pkg}{QUALIFIER}{name}" if len(eps) > 1 else name)
                    what = f"{kind} {name!r} from {pkg} {version}: its description cannot be read"
                    description = call_plugin(what, _quietly(lambda obj=obj: _describe(obj)))
                except PluginError as exc:
                    status, error = ("clash", f"{error}; {exc}") if error else ("broken", str(exc))
                rows.append(PluginInfo(kind, name, pkg, version, ep.value, description, status, error))
    return rows
