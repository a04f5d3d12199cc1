"""A detect rerun only resumes the cache of the same folder, shard, detector and crop settings (issue 28).

Anything else is refused before the cache is touched, naming the cache's value and the requested one; and a
folder that cannot be read keeps its faces instead of losing them as "no longer in the folder".
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from detect_helpers import KNOWN_IMAGES, facetool_command, run_cli

from facetool.cache import open_cache, write_selection
from facetool.config.detect import DetectConfig
from facetool.curation import merge_caches
from facetool.detection.runner import detect_directory
from facetool.errors import UsageError

# Root ignores file modes through these two capabilities; without them a mode-000 folder is unreadable to it.
DROP_READ_BYPASS = (
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
)


def _config(ssd_dir: Path, **update: object) -> DetectConfig:
    settings = {"workers": 1, "model_dir": ssd_dir, "model_format": "caffe", "image_size": 64}
    return DetectConfig(**(settings | update))


def _people(lfw_dir: Path, root: Path, names: tuple[str, ...] = ("Anna", "Bert", "Carl")) -> Path:
    """Real folders (copies, so their modes can change) holding real LFW images: two per person."""
    images = [*KNOWN_IMAGES, *KNOWN_IMAGES]
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for k in range(2):
            shutil.copyfile(lfw_dir / images[2 * i + k], root / name / f"{name}_{k}.jpg")
    return root


def _paths(cache_path: Path) -> list[str]:
    with open_cache(cache_path) as cache:
        return list(cache.paths)


def test_another_shard_into_a_shard_file_is_refused(lfw_dir: Path, ssd_dir: Path, tmp_path: Path) -> None:
    data, cache = _people(lfw_dir, tmp_path / "data"), tmp_path / "shard0.h5"
    models = ["--model-dir", ssd_dir, "--format", "caffe", "--image-size", "64", "-j", "1", "--no-progress"]
    first = run_cli("detect", data, "-o", cache, "--shard", "0/2", *models)
    assert first.returncode == 0, first.stderr
    before = _paths(cache)
    assert before == ["Anna/Anna_0.jpg", "Anna/Anna_1.jpg", "Carl/Carl_0.jpg", "Carl/Carl_1.jpg"]

    second = run_cli("detect", data, "-o", cache, "--shard", "1/2", *models)
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1 and second.stderr.startswith(f"error: {cache}:")
    assert "shard 0/2" in second.stderr and "shard 1/2" in second.stderr, second.stderr
    assert "no longer in the folder" not in second.stderr
    assert _paths(cache) == before
    with pytest.raises(UsageError, match=r"shard 0/2 .*the whole folder"):
        detect_directory(data, cache, _config(ssd_dir))
    assert _paths(cache) == before


def test_another_folder_into_an_existing_cache_is_refused(
    lfw_dir: Path, ssd_dir: Path, tmp_path: Path
) -> None:
    first, other = _people(lfw_dir, tmp_path / "first"), _people(lfw_dir, tmp_path / "other", ("Dora",))
    cache = tmp_path / "faces.h5"
    detect_directory(first, cache, _config(ssd_dir))
    before = _paths(cache)
    assert len(before) == 6
    with pytest.raises(UsageError) as refused:
        detect_directory(other, cache, _config(ssd_dir))
    message = str(refused.value)
    assert str(first.resolve()) in message and str(other.resolve()) in message and "\n" not in message
    assert "dataset merge" in message
    assert _paths(cache) == before
    summary = detect_directory(first, cache, _config(ssd_dir))  # the same folder still resumes
    assert summary.skipped == 6 and not summary.removed and summary.processed == 0


def test_another_detector_is_refused(lfw_dir: Path, ssd_dir: Path, tmp_path: Path) -> None:
    data, cache = _people(lfw_dir, tmp_path / "data", ("Anna",)), tmp_path / "faces.h5"
    detect_directory(data, cache, _config(ssd_dir))
    with pytest.raises(UsageError, match=r"detector .*caffe.* \(cache\) vs .*tensorflow.* \(this run\)"):
        detect_directory(data, cache, _config(ssd_dir, model_format="tensorflow"))
    with open_cache(cache) as faces:
        assert faces.meta["detector"]["format"] == "caffe" and len(faces) == 2


def test_a_cache_merged_from_two_folders_refuses_a_detect_rerun(
    lfw_dir: Path, ssd_dir: Path, tmp_path: Path
) -> None:
    """Adding a folder is a merge; a detect rerun of either folder would drop the other folder's faces."""
    first, other = _people(lfw_dir, tmp_path / "first"), _people(lfw_dir, tmp_path / "other", ("Dora",))
    detect_directory(first, tmp_path / "a.h5", _config(ssd_dir))
    detect_directory(other, tmp_path / "b.h5", _config(ssd_dir))
    merged = tmp_path / "merged.h5"
    merge_caches([tmp_path / "a.h5", tmp_path / "b.h5"], merged)
    before = _paths(merged)
    assert len(before) == 8
    with pytest.raises(UsageError, match="several folders"):
        detect_directory(first, merged, _config(ssd_dir))
    assert _paths(merged) == before


def test_shards_merged_whole_resume_and_refuse_other_crop_settings(
    lfw_dir: Path, ssd_dir: Path, tmp_path: Path
) -> None:
    """A merge of every shard is the whole folder: detect resumes it, with its crop settings and no others."""
    data = _people(lfw_dir, tmp_path / "data")
    parts = [tmp_path / f"shard{i}.h5" for i in range(2)]
    for i, part in enumerate(parts):
        detect_directory(data, part, _config(ssd_dir, margin=0.3, shard=f"{i}/2"))
    merged = tmp_path / "merged.h5"
    merge_caches(parts, merged)
    with open_cache(merged) as cache:
        assert (cache.meta["margin"], cache.meta["image_size"], cache.meta["shard"]) == (0.3, 64, None)
        assert cache.meta["detector"]["format"] == "caffe"
    with pytest.raises(UsageError, match=r"margin 0\.3 \(cache\) vs 0\.2 \(this run\)"):
        detect_directory(data, merged, _config(ssd_dir))
    assert len(_paths(merged)) == 6
    summary = detect_directory(data, merged, _config(ssd_dir, margin=0.3))
    assert summary.skipped == 6 and not summary.removed and summary.processed == 0
    with pytest.raises(UsageError, match=r"the whole folder .*shard 1/2"):
        detect_directory(data, merged, _config(ssd_dir, margin=0.3, shard="1/2"))


def _unreadable_to_this_user() -> tuple[str, ...] | None:
    """How to run a process that a mode-000 folder stops: as non-root, as it is; as root, under setpriv without
    the two capabilities that let root read anything. None when neither is possible here."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    return (setpriv, *DROP_READ_BYPASS) if setpriv else None


def test_an_unreadable_identity_folder_keeps_its_faces(lfw_dir: Path, ssd_dir: Path, tmp_path: Path) -> None:
    wrapper = _unreadable_to_this_user()
    if wrapper is None:
        pytest.skip("root without setpriv: a mode-000 folder stays readable, so it cannot be tested")
    data, cache = _people(lfw_dir, tmp_path / "data", ("Anna", "Bert")), tmp_path / "faces.h5"
    models = ["--model-dir", ssd_dir, "--format", "caffe", "--image-size", "64", "-j", "1", "--no-progress"]
    first = run_cli("detect", data, "-o", cache, *models)
    assert first.returncode == 0, first.stderr
    before = _paths(cache)
    assert len(before) == 4

    (data / "Anna").chmod(0)
    try:
        command = [*wrapper, *facetool_command("detect", data, "-o", cache, *models)]
        rerun = subprocess.run(
            command, env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300
        )
    finally:
        (data / "Anna").chmod(0o755)
    assert rerun.returncode == 0, rerun.stderr
    assert "Anna: cannot read folder (Permission denied)" in rerun.stderr, rerun.stderr
    assert "no longer in the folder" not in rerun.stderr
    row = next(line for line in rerun.stdout.splitlines() if "kept (folder unreadable)" in line)
    assert row.split("│")[-2].strip() == "2"
    assert _paths(cache) == before


def test_an_identity_folder_on_a_missing_disk_keeps_its_faces(
    lfw_dir: Path, ssd_dir: Path, tmp_path: Path
) -> None:
    """An identity linked to a disk that is not mounted now is a dangling symlink: unreadable, not deleted."""
    disk, data, cache = tmp_path / "disk", tmp_path / "data", tmp_path / "faces.h5"
    _people(lfw_dir, disk, ("Anna",))
    _people(lfw_dir, data, ("Bert",))
    (data / "Anna").symlink_to(disk / "Anna", target_is_directory=True)
    detect_directory(data, cache, _config(ssd_dir))
    before = _paths(cache)
    assert before == ["Anna/Anna_0.jpg", "Anna/Anna_1.jpg", "Bert/Bert_0.jpg", "Bert/Bert_1.jpg"]
    disk.rename(tmp_path / "unmounted")
    summary = detect_directory(data, cache, _config(ssd_dir))
    assert not summary.removed and summary.kept_unreadable == 2
    assert [p.path for p in summary.problems] == ["Anna"]
    assert _paths(cache) == before
    (tmp_path / "unmounted").rename(disk)
    (disk / "Anna" / "Anna_1.jpg").unlink()  # really gone now: the next readable run removes it
    summary = detect_directory(data, cache, _config(ssd_dir))
    assert "Anna/Anna_1.jpg" in summary.removed and "Anna/Anna_0.jpg" not in summary.removed
    assert summary.kept_unreadable == 0 and _paths(cache) == before[:1] + before[2:]


def test_merge_refuses_caches_cropped_with_other_settings(
    lfw_dir: Path, ssd_dir: Path, tmp_path: Path
) -> None:
    data = _people(lfw_dir, tmp_path / "data")
    a, b = tmp_path / "shard0.h5", tmp_path / "shard1.h5"
    detect_directory(data, a, _config(ssd_dir, shard="0/2"))
    detect_directory(data, b, _config(ssd_dir, shard="1/2", margin=0.3))
    out = tmp_path / "merged.h5"
    result = run_cli("dataset", "merge", a, b, "-o", out)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {a}: margin 0.2 vs {b}: 0.3;"), result.stderr
    assert not out.exists()


def test_a_cache_merged_by_an_older_facetool_is_checked_by_its_inputs_settings(
    lfw_dir: Path, ssd_dir: Path, tmp_path: Path
) -> None:
    """Older merges kept the settings only under `merged_from`; a rerun reads them from there."""
    data = _people(lfw_dir, tmp_path / "data")
    parts = [tmp_path / f"shard{i}.h5" for i in range(2)]
    for i, part in enumerate(parts):
        detect_directory(data, part, _config(ssd_dir, margin=0.3, shard=f"{i}/2"))
    old = tmp_path / "old-merge.h5"
    caches = [open_cache(part) for part in parts]
    try:
        meta = {"merged_from": [{"path": str(c.path), "meta": c.meta} for c in caches]}  # what merge wrote
        write_selection(old, [(c, list(range(len(c))), list(c.failures)) for c in caches], meta)
    finally:
        for cache in caches:
            cache.close()
    with pytest.raises(UsageError, match=r"margin 0\.3 \(cache\) vs 0\.2 \(this run\)"):
        detect_directory(data, old, _config(ssd_dir))
    with pytest.raises(UsageError, match=r"the whole folder .*shard 0/2"):
        detect_directory(data, old, _config(ssd_dir, margin=0.3, shard="0/2"))
    assert len(_paths(old)) == 6
