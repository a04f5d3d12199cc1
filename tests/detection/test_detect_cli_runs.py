"""`facetool detect` as a real subprocess over ~300 LFW images: both formats, Ctrl-C, SIGKILL and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from detect_helpers import facetool_command, run_cli
from process_helpers import children, is_running

from facetool.cache import open_cache
from facetool.detection.runner import COMMIT_IMAGES
from facetool.errors import CacheError


def summary_value(stdout: str, label: str) -> str:
    line = next(line for line in stdout.splitlines() if label in line)
    return line.split("│")[-2].strip()


@pytest.fixture(scope="module")
def tf_run(lfw_a_dir, ssd_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted reference run with the TensorFlow model."""
    data, count = lfw_a_dir
    cache = tmp_path_factory.mktemp("tf_run") / "faces.h5"
    result = run_cli(
        "detect", data, "-o", cache, "--model-dir", ssd_dir, "--format", "tensorflow", timeout=600
    )
    return result, cache, count


def test_tensorflow_run_over_lfw(tf_run):
    result, cache_path, count = tf_run
    assert result.returncode == 0, result.stderr
    assert summary_value(result.stdout, "images found") == str(count)
    assert summary_value(result.stdout, "faces found") == str(count)
    assert "img/s" in result.stderr  # the progress bar with its rate column
    with open_cache(cache_path) as cache:
        assert len(cache) == count and cache.detected.all() and not cache.failures
        assert cache.image_size == 160 and cache.encoding == "jpeg"
        assert cache.meta["detector"]["format"] == "tensorflow" and cache.meta["threshold"] == 0.5
        assert (cache.scores >= 0.5).all()
        centres = (cache.boxes[:, :2] + cache.boxes[:, 2:]) / 2
        assert np.median(np.abs(centres - 125)) < 15  # LFW faces sit near the middle of the 250x250 frame
        faces = cache.read_faces(np.arange(5))
        assert faces.shape == (5, 160, 160, 3) and faces.std() > 20


def test_caffe_run_matches_tensorflow(tf_run, lfw_a_dir, ssd_dir: Path, tmp_path: Path):
    _, tf_cache, count = tf_run
    data, _ = lfw_a_dir
    config = tmp_path / "detect.toml"
    config.write_text(f'[detect]\nmodel_format = "caffe"\nmodel_dir = "{ssd_dir}"\nencoding = "raw"\n')
    cache = tmp_path / "caffe.h5"
    result = run_cli("detect", data, "-o", cache, "--config", config, "--set", "workers=2", "--no-progress")
    assert result.returncode == 0, result.stderr
    with open_cache(cache) as caffe, open_cache(tf_cache) as tf:
        assert caffe.meta["detector"]["format"] == "caffe" and caffe.encoding == "raw"
        assert caffe.paths == tf.paths and len(caffe) == count
        assert np.abs(caffe.boxes - tf.boxes).max() < 3.0
        assert np.median(np.abs(caffe.boxes - tf.boxes)) < 0.5
        assert np.abs(caffe.scores - tf.scores).max() < 0.05


def wait_for_records(cache: Path, proc: subprocess.Popen, minimum: int, timeout: float = 120) -> int:
    """Poll the cache a running `detect` writes until it holds at least `minimum` committed records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "detect finished before it could be interrupted"
        try:
            with open_cache(cache) as c:
                if len(c) + len(c.failures) >= minimum:
                    return len(c)
        except CacheError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no {minimum} committed records within {timeout} s")


def test_ctrl_c_then_sigkill_then_resume_equals_uninterrupted(
    tf_run, lfw_a_dir, ssd_dir: Path, tmp_path: Path
):
    _, ref_cache, count = tf_run
    data, _ = lfw_a_dir
    cache = tmp_path / "resumed.h5"
    args = ("detect", data, "-o", cache, "--model-dir", ssd_dir, "--format", "tensorflow", "--no-progress")
    args += ("--workers", "2")
    env = {**os.environ, "COLUMNS": "200"}

    # Ctrl-C: everything finished is committed, exit code 130
    proc = subprocess.Popen(
        facetool_command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for_records(cache, proc, COMMIT_IMAGES)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout and "rerun" in stderr
    with open_cache(cache) as c:
        after_ctrl_c = len(c)
    assert COMMIT_IMAGES <= after_ctrl_c < count
    assert summary_value(stdout, "processed now") == str(after_ctrl_c)

    # SIGKILL of the parent mid-run: committed records survive, the orphaned workers exit by themselves
    proc = subprocess.Popen(facetool_command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_records(cache, proc, after_ctrl_c + COMMIT_IMAGES)
    workers = children(proc.pid)
    assert len(workers) >= 1
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while any(is_running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(is_running(w) for w in workers), "worker processes outlived their killed parent"
    with open_cache(cache) as c:
        after_kill = len(c)
    assert after_ctrl_c + COMMIT_IMAGES <= after_kill < count

    # resume: only the rest is processed, and the cache equals the uninterrupted one
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert summary_value(result.stdout, "already in cache") == str(after_kill)
    assert summary_value(result.stdout, "processed now") == str(count - after_kill)
    with open_cache(cache) as resumed, open_cache(ref_cache) as ref:
        assert resumed.paths == ref.paths
        assert resumed.identities == ref.identities and np.array_equal(resumed.labels, ref.labels)
        np.testing.assert_array_equal(resumed.boxes, ref.boxes)
        np.testing.assert_array_equal(resumed.scores, ref.scores)
        np.testing.assert_array_equal(resumed.detected, ref.detected)
        np.testing.assert_array_equal(resumed.read_faces(), ref.read_faces())
        assert resumed.failures == ref.failures
