"""Listing `DATA_DIR/<identity>/.../<image>` with the resume key of each file; problems are reported, not fatal."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from facetool.cache import Failure
from facetool.detection.images import is_image_name
from facetool.errors import UsageError
from facetool.identities import normalize_identity


@dataclass(frozen=True)
class ImageEntry:
    """One image file: path relative to the data directory (POSIX), its identity, and its resume key."""

    path: str
    identity: str
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    """Images sorted by path, identity folders without any image, and entries that could not be scanned."""

    images: list[ImageEntry] = field(default_factory=list)
    empty_identities: list[str] = field(default_factory=list)
    problems: list[Failure] = field(default_factory=list)

    @property
    def identities(self) -> list[str]:
        """Identities that hold at least one image, sorted."""
        return sorted({entry.identity for entry in self.images})


def _printable(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _dir_key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


class _Walker:
    """Walks one data directory; kept as an object so the result lists are not threaded through every call."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.result = ScanResult()

    def problem(self, rel: str, identity: str, reason: str) -> None:
        self.result.problems.append(Failure(_printable(rel), _printable(identity), 0, 0, reason))

    def walk(self, identity: str, rel_dir: str, abs_dir: str, ancestors: frozenset) -> bool:
        """Add the images under one folder; True when the folder could be read."""
        try:
            with os.scandir(abs_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.problem(rel_dir, identity, f"cannot read folder ({exc.strerror or exc})")
            return False
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = f"{rel_dir}/{entry.name}"
            try:
                st = os.stat(entry.path)
            except OSError as exc:
                kind = "broken symlink or symlink loop" if entry.is_symlink() else "cannot stat"
                self.problem(rel, identity, f"{kind} ({exc.strerror or exc})")
                continue
            if stat.S_ISDIR(st.st_mode):
                if _dir_key(st) in ancestors:
                    self.problem(rel, identity, "symlink loop (folder links back to one of its parents)")
                else:
                    self.walk(identity, rel, entry.path, ancestors | {_dir_key(st)})
            elif stat.S_ISREG(st.st_mode) and is_image_name(entry.name):
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    self.problem(rel, identity, "file name is not valid UTF-8")
                    continue
                self.result.images.append(ImageEntry(rel, identity, st.st_size, st.st_mtime_ns))
        return True

    def run(self) -> ScanResult:
        try:
            root_stat = os.stat(self.root)
            with os.scandir(self.root) as it:
                top = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise UsageError(f"{self.root}: cannot read data directory ({exc.strerror or exc})") from None
        ancestors = frozenset({_dir_key(root_stat)})
        for entry in top:
            if entry.name.startswith("."):
                continue
            try:
                st = os.stat(entry.path)
            except OSError as exc:
                if entry.is_symlink():
                    self.problem(
                        entry.name,
                        normalize_identity(entry.name),
                        f"broken symlink or symlink loop ({exc.strerror})",
                    )
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if _dir_key(st) in ancestors:
                self.problem(
                    entry.name,
                    normalize_identity(entry.name),
                    "symlink loop (folder links back to the data directory)",
                )
                continue
            before = len(self.result.images)
            identity = normalize_identity(entry.name)
            readable = self.walk(identity, entry.name, entry.path, ancestors | {_dir_key(st)})
            if readable and len(self.result.images) == before:
                self.result.empty_identities.append(identity)
        self.result.images.sort(key=lambda e: e.path)
        return self.result


def scan_images(data_dir: str | Path) -> ScanResult:
    """All images of an LFW-style folder, sorted by path, with size and mtime_ns as the resume key.

    Identities are the top-level folder names in Unicode NFC, so NFC and NFD spellings of one name are one
    identity; images may sit in sub-folders of an identity. Extensions jpg, jpeg, png, bmp, webp, gif (first
    frame), tif and tiff match in any case; hidden entries are skipped. Symlink loops and
    unreadable folders become `problems`. A missing data directory raises UsageError.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise UsageError(f"{root}: data directory not found (expected DATA_DIR/<identity>/<image>)")
    return _Walker(root).run()


def take_shard(scan: ScanResult, index: int, count: int) -> ScanResult:
    """The part of `scan` whose identities fall in shard `index` of `count`.

    Identities, sorted by name, are dealt out in turn, so every identity lands whole in exactly one shard and the
    shards of one directory are the same on every machine.
    """
    names = sorted(
        {e.identity for e in scan.images} | set(scan.empty_identities) | {p.identity for p in scan.problems}
    )
    mine = {name for i, name in enumerate(names) if i % count == index}
    return ScanResult(
        images=[e for e in scan.images if e.identity in mine],
        empty_identities=[name for name in scan.empty_identities if name in mine],
        problems=[p for p in scan.problems if p.identity in mine],
    )


def launcher_shard(env: Mapping[str, str] | None = None) -> str | None:
    """`RANK/WORLD_SIZE` as an i/n shard when a launcher (torchrun, one process per machine) set WORLD_SIZE > 1."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return None
    try:
        count, index = int(env["WORLD_SIZE"]), int(env.get("RANK", ""))
    except ValueError:
        raise UsageError(
            f"RANK={env.get('RANK', '')!r} WORLD_SIZE={env['WORLD_SIZE']!r}: expected whole numbers"
        ) from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"RANK={index} WORLD_SIZE={count}: expected 0 <= RANK < WORLD_SIZE")
    return None if count == 1 else f"{index}/{count}"


def shard_output(path: Path, shard: str) -> Path:
    """The output of one shard: `faces.h5` with shard 1/4 becomes `faces.shard1-of-4.h5`."""
    index, count = shard.split("/")
    return path.with_name(f"{path.stem}.shard{index}-of-{count}{path.suffix}")
