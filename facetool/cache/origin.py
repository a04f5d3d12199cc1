"""What a cache's faces were made from, as its meta records it: folder, shard, detector, alignment and crop settings.

`facetool detect` writes these keys. A detect rerun resumes a cache only when they match (`folder_conflict`,
`setting_differences`): otherwise it would drop the faces of another folder or shard, or mix two crop
geometries. `dataset merge` carries them into the merged cache (`merged_meta`) and refuses inputs whose crops
differ, so a merged cache is resumed, filtered and exported with the settings its faces were made with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from facetool.errors import UsageError

CROP_SETTINGS = ("threshold", "select", "margin", "image_size")
DETECTOR = "detector"
ALIGN = "align"
CHECKED = (*CROP_SETTINGS, ALIGN, DETECTOR)
# What a cache made by `facetool detect` before the key existed means by its absence: the SSD, box crops.
IMPLIED = {ALIGN: "none"}
IMPLIED_DETECTOR = "ssd"
_WHOLE = "the whole folder"
_ABSENT = "(not recorded)"


def _comparable(key: str, value: Any) -> Any:
    """The part of a setting that decides the crops: a detector by name, format, weights and its own settings,
    not where it was found on one machine nor the device it ran on."""
    if key == DETECTOR and isinstance(value, Mapping):
        return {
            "name": value.get("name", IMPLIED_DETECTOR),
            "format": value.get("format"),
            "weights": value.get("weights"),
            "settings": value.get("settings") or {},
        }
    return value


def _shown(key: str, value: Any) -> str:
    value = _comparable(key, value)
    if key == DETECTOR and isinstance(value, Mapping):
        words = [value["name"], *(str(value[k]) for k in ("format", "weights") if value[k] is not None)]
        words += [f"{k}={v!r}" for k, v in sorted(value["settings"].items())]
        return " ".join(words)
    return repr(value)


def _setting(meta: Mapping[str, Any], key: str) -> Any:
    """The value of `key` in a cache's meta; a key added later reads as what its absence meant in a cache that
    `detect` made (it records its detector), `_ABSENT` otherwise."""
    if key in meta:
        return meta[key]
    if key in IMPLIED and DETECTOR in meta:
        return IMPLIED[key]
    return _ABSENT


def _shown_or_absent(key: str, value: Any) -> str:
    return _ABSENT if value is _ABSENT else _shown(key, value)


def setting_differences(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """`key stored (cache) vs requested (this run)` for each crop, alignment or detector setting the cache records
    and this run changes."""
    found = []
    for key in CHECKED:
        have = _setting(stored, key)
        if have is not _ABSENT and _comparable(key, have) != _comparable(key, requested.get(key)):
            found.append(f"{key} {_shown(key, have)} (cache) vs {_shown(key, requested.get(key))} (this run)")
    return found


def _shard_cover(value: Any) -> Any:
    """The shards a meta `shard` entry covers, as a frozenset of (index, count); None for the whole folder.
    A value of another form is returned as it is, so it compares equal only to itself."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    try:
        parts = frozenset((int(i), int(n)) for i, n in (str(item).split("/") for item in items))
    except ValueError:
        return value
    return _whole_if_complete(parts)


def _whole_if_complete(parts: frozenset[tuple[int, int]]) -> frozenset[tuple[int, int]] | None:
    counts = {n for _, n in parts}
    if len(counts) == 1 and {i for i, _ in parts} == set(range(counts.pop())):
        return None
    return parts


def _shard_value(cover: Any) -> Any:
    """A shard cover as a meta entry: None (whole), "i/n", or a sorted list of them."""
    if not isinstance(cover, frozenset):
        return cover
    names = [f"{i}/{n}" for n, i in sorted((n, i) for i, n in cover)]
    return names[0] if len(names) == 1 else names


def _describe_shard(cover: Any) -> str:
    if cover is None:
        return _WHOLE
    value = _shard_value(cover)
    return f"shard {value}" if isinstance(value, str) else f"shards {', '.join(map(str, value))}"


def folder_conflict(stored: Mapping[str, Any], data_dir: str, shard: str | None) -> str | None:
    """Why a detect run of `data_dir` (resolved) and `shard` must not resume a cache whose meta is `stored`,
    or None when it may. Keys the cache does not record are not checked."""
    if "data_dirs" in stored:
        folders = ", ".join(map(str, stored["data_dirs"]))
        return (
            f"merged from several folders ({folders}), not made from {data_dir} alone; detect that folder "
            "into its own cache and add it with `facetool dataset merge`"
        )
    if "data_dir" in stored and stored["data_dir"] != data_dir:
        return (
            f"made from folder {stored['data_dir']} (cache), not {data_dir} (this run); detect each folder "
            "into its own cache and combine them with `facetool dataset merge`"
        )
    if "shard" in stored:
        have, want = _shard_cover(stored["shard"]), _shard_cover(shard)
        if have != want:
            return (
                f"holds {_describe_shard(have)} (cache), this run detects {_describe_shard(want)}; "
                "give each shard its own output and combine them with `facetool dataset merge`"
            )
    return None


def recorded(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """The settings a cache's meta records. A cache merged by an older facetool kept its inputs' settings
    only under `merged_from`; they are read from there."""
    entries = meta.get("merged_from")
    if any(key in meta for key in (*CHECKED, "data_dir", "data_dirs")) or not isinstance(entries, list):
        return meta
    try:
        inputs = [(str(entry["path"]), entry["meta"]) for entry in entries]
    except (KeyError, TypeError):
        return meta
    return {**merged_meta(inputs), **meta}


def merged_meta(inputs: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The meta of a merge of caches given as (path, meta): their common crop and detector settings, their
    folder (`data_dirs` when they differ) and the shards they cover together, and every input under
    `merged_from`. A crop or detector setting that differs is a UsageError naming both files and the key."""
    settings = [(path, recorded(meta)) for path, meta in inputs]
    merged: dict[str, Any] = {}
    first_path, first = settings[0]
    for key in CHECKED:
        mine = _setting(first, key)
        for path, meta in settings[1:]:
            theirs = _setting(meta, key)
            if _comparable(key, mine) != _comparable(key, theirs):
                raise UsageError(
                    f"{first_path}: {key} {_shown_or_absent(key, mine)} vs {path}: {_shown_or_absent(key, theirs)}; "
                    "caches cropped with other settings do not merge (one cache, one crop geometry)"
                )
        if mine is not _ABSENT:
            merged[key] = mine
    if "template" in first:
        merged["template"] = first["template"]
    pixel_limits = {repr(meta.get("max_pixels")) for _, meta in settings}
    if len(pixel_limits) == 1 and "max_pixels" in first:
        merged["max_pixels"] = first["max_pixels"]
    folders = [
        meta["data_dirs"] if "data_dirs" in meta else [meta.get("data_dir", "(unknown)")]
        for _, meta in settings
    ]
    distinct = sorted({str(folder) for group in folders for folder in group})
    if len(distinct) == 1 and "data_dir" in first:
        merged["data_dir"] = first["data_dir"]
    elif distinct != ["(unknown)"]:
        merged["data_dirs"] = distinct
    if any("shard" in meta for _, meta in settings):
        merged["shard"] = _merged_shards([meta.get("shard") for _, meta in settings])
    merged["merged_from"] = [{"path": path, "meta": dict(meta)} for path, meta in inputs]
    return merged


def _merged_shards(values: list[Any]) -> Any:
    """The shard entry of a merge: what its inputs cover together."""
    covers = [_shard_cover(value) for value in values]
    if None in covers:
        return None
    if all(isinstance(cover, frozenset) for cover in covers):
        return _shard_value(_whole_if_complete(frozenset().union(*covers)))
    return values  # an entry this version cannot read: kept as it is, so no detect rerun matches it
