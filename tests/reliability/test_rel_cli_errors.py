"""Every error a user can cause ends in one readable stderr line: exit 2 for usage errors, 1 for failures,
no traceback unless --verbose."""

from __future__ import annotations

import builtins
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import facetool_in_process
from reliability_helpers import (
    assert_one_line_error,
    facetool,
    write_small_cache,
    write_small_checkpoint,
    write_small_pairs,
)

# (arguments with {T} for the inputs folder, exit code, words the one line must hold)
CASES: list[tuple[str, int, str]] = [
    ("detect {T}/missing-dir", 2, "{T}/missing-dir"),
    ("detect {T}/data --threshold abc", 2, "--threshold"),
    ("detect {T}/data --threshold 1.5", 2, "threshold"),
    ("detect {T}/data --select nope", 2, "select"),
    ("detect {T}/data --config {T}/missing.toml", 2, "{T}/missing.toml"),
    ("detect {T}/data --config {T}/bad.toml", 2, "{T}/bad.toml"),
    ("detect {T}/data --set bogus=1", 2, "bogus"),
    ("detect {T}/data --image-size 0", 2, "image_size"),
    ("detect {T}/data -j -3", 2, "workers"),
    ("detect {T}/data --model-dir {T}/no-models", 1, "{T}/no-models"),
    ("detect", 2, "data_dir"),
    ("dataset stats {T}/missing.h5", 1, "{T}/missing.h5"),
    ("dataset stats {T}/pairs.txt", 1, "{T}/pairs.txt"),
    ("dataset filter {T}/good.h5", 2, "--output"),
    ("dataset filter {T}/good.h5 -o {T}/o.h5 --min-images -1", 2, "min_images"),
    ("dataset filter {T}/good.h5 -o {T}/o.h5 --min-images many", 2, "--min-images"),
    ("dataset filter {T}/good.h5 -o {T}/o.h5 --include {T}/missing.txt", 2, "{T}/missing.txt"),
    ("dataset filter {T}/good.h5 -o {T}/o.h5 --exclude-pairs {T}/good.h5", 1, "{T}/good.h5"),
    ("dataset filter {T}/good.h5 -o {T}/good.h5", 2, "overwrite"),
    ("dataset merge {T}/good.h5 {T}/good.h5 -o {T}/good.h5", 2, "overwrite"),
    ("dataset nosuch", 2, "nosuch"),
    ("train", 2, "data_dir"),
    ("train --data {T}/missing.h5", 1, "{T}/missing.h5"),
    ("train --data {T}/good.h5 --batch-size 91", 2, "batch_size"),
    ("train --data {T}/good.h5 --num-epochs -1", 2, "num_epochs"),
    ("train --data {T}/good.h5 --learning-rate fast", 2, "--learning"),
    ("train --set foo", 2, "foo"),
    ("train --config {T}/bad.toml", 2, "{T}/bad.toml"),
    ("train --data {T}/good.h5 --resume {T}/missing.pth --checkpoint-dir {T}/run", 1, "{T}/missing.pth"),
    ("train --data {T}/good.h5 --resume {T}/pairs.txt --checkpoint-dir {T}/run", 1, "{T}/pairs.txt"),
    ("train --data {T}/good.h5 --device cuda:7 --checkpoint-dir {T}/run", 2, "cuda:7"),
    ("train --data {T}/good.h5 --device gpu --checkpoint-dir {T}/run", 2, "gpu"),
    ("train --data {T}/good.h5 --pretrained nosuch --checkpoint-dir {T}/run", 1, "nosuch"),
    ("train --data {T}/good.h5 --set miner=nosuch --checkpoint-dir {T}/run", 1, "nosuch"),
    ("eval {T}/missing.pth --data {T}/good.h5 --pairs {T}/pairs.txt", 1, "{T}/missing.pth"),
    ("eval {T}/pairs.txt --data {T}/good.h5 --pairs {T}/pairs.txt", 1, "{T}/pairs.txt"),
    ("eval {T}/model.pth --data {T}/good.h5 --pairs {T}/missing.txt", 1, "{T}/missing.txt"),
    ("eval {T}/model.pth --data {T}/good.h5 --pairs {T}/good.h5", 1, "{T}/good.h5"),
    ("eval {T}/model.pth --data {T}/good.h5 --pairs {T}/bad-pairs.txt", 1, "{T}/bad-pairs.txt:3"),
    ("eval {T}/model.pth --data {T}/good.h5 --distance manhattan", 2, "distance"),
    ("eval {T}/model.pth --data {T}/good.h5 --pairs {T}/pairs.txt --batch-size 0", 2, "batch_size"),
    ("eval {T}/model.pth --data {T}/good.h5 --pairs {T}/pairs.txt --device cuda:7", 2, "cuda:7"),
    ("eval {T}/model.pth", 2, "--data"),
    ("eval", 2, "CKPT"),
    ("embed {T}/model.pth {T}/good.h5 -o {T}/out.xyz", 2, "{T}/out.xyz"),
    ("embed {T}/missing.pth {T}/good.h5 -o {T}/out.npz", 1, "{T}/missing.pth"),
    ("embed {T}/model.pth {T}/missing-dir -o {T}/out.npz", 2, "{T}/missing-dir"),
    ("embed {T}/model.pth {T}/good.h5", 2, "--output"),
    ("embed {T}/model.pth {T}/good.h5 -o {T}/out.npz --set flip=maybe", 2, "flip"),
    ("plot {T}/missing-dir", 1, "{T}/missing-dir"),
    ("plot {T}/data", 1, "history.json"),
    ("plugins list --bogus", 2, "--bogus"),
    ("plugins list --kind nosuch", 2, "--kind"),
    ("plugins nosuch", 2, "nosuch"),
    ("demo --epochs zero", 2, "--epochs"),
    ("demo --bogus", 2, "--bogus"),
    ("nosuchcommand", 2, "nosuchcommand"),
    ("--bogus", 2, "--bogus"),
]

# One real subprocess per command group (the rest run through the same entry point in-process).
SUBPROCESS = [
    "detect {T}/data --set bogus=1",
    "dataset filter {T}/good.h5 -o {T}/o.h5 --exclude-pairs {T}/good.h5",
    "train --data {T}/good.h5 --batch-size 91",
    "eval {T}/model.pth --data {T}/good.h5 --pairs {T}/bad-pairs.txt",
    "embed {T}/model.pth {T}/good.h5 -o {T}/out.xyz",
    "plot {T}/missing-dir",
    "plugins list --bogus",
    "demo --epochs zero",
]


@pytest.fixture(scope="module")
def inputs(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-errors")
    write_small_cache(lfw_dir, folder / "good.h5")
    write_small_checkpoint(folder / "model.pth")
    write_small_pairs(lfw_dir, folder / "pairs.txt")
    (folder / "bad-pairs.txt").write_text(
        "2\t1\nAaron_Peirsol\t1\t2\nAaron_Peirsol\tone\tAbdoulaye_Wade\t1\n"
    )
    (folder / "bad.toml").write_text("threshold = [unclosed\n")
    (folder / "data" / "Someone").mkdir(parents=True)
    (folder / "data" / "Someone" / "a.jpg").symlink_to(next((lfw_dir / "Aaron_Peirsol").glob("*.jpg")))
    return folder


def _args(template: str, folder: Path) -> list[str]:
    return template.replace("{T}", str(folder)).split()


@pytest.mark.parametrize(("template", "code", "needle"), CASES, ids=[c[0].replace("{T}/", "") for c in CASES])
def test_bad_invocation_is_one_line(template: str, code: int, needle: str, inputs: Path) -> None:
    result = facetool_in_process(*_args(template, inputs))
    assert_one_line_error(result, code, needle.replace("{T}", str(inputs)))
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("template", SUBPROCESS, ids=[t.replace("{T}/", "") for t in SUBPROCESS])
def test_bad_invocation_in_a_real_subprocess(template: str, inputs: Path) -> None:
    code, needle = next((c, n) for t, c, n in CASES if t == template)
    result = facetool(*_args(template, inputs))
    assert_one_line_error(result, code, needle.replace("{T}", str(inputs)))


def test_verbose_adds_the_traceback(inputs: Path) -> None:
    result = facetool("--verbose", "dataset", "stats", inputs / "missing.h5")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "CacheError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error:")


# Output locations that are existing files: each command names the blocked path in one line.
OUTPUT_IS_A_FILE = [
    "train --data {T}/good.h5 --checkpoint-dir {T}/pairs.txt --device cpu",
    "eval {T}/model.pth --data {T}/good.h5 --pairs {T}/pairs.txt --out {T}/pairs.txt --device cpu",
    "embed {T}/model.pth {T}/good.h5 -o {T}/good.h5/x.npz --device cpu",
]


@pytest.mark.parametrize("template", OUTPUT_IS_A_FILE, ids=["train", "eval", "embed"])
def test_output_folder_that_is_a_file_is_one_line(template: str, inputs: Path) -> None:
    result = facetool_in_process(*_args(template, inputs))
    assert_one_line_error(result, 1)
    assert "internal error" not in result.stderr


# --- Ctrl-C and SIGTERM: one line, exit 128 + signal, no partial file under a final name ----------------------


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has installed its SIGTERM handler: facetool's `main` is running its command."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def _signalled(
    args: list[object], signum: int, ready: Callable[[], bool], workdir: Path
) -> tuple[int, list[str]]:
    """Run the real CLI, send `signum` once it is inside its command and `ready()` holds; exit code and stderr lines."""
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out, err = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "facetool", *map(str, args)],
            cwd=workdir,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        deadline = time.monotonic() + 120
        while not (_catches_sigterm(proc.pid) and ready()):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"ended or stalled before the signal (exit {proc.wait()}):\n{err.read_text()}")
            time.sleep(0.02)
        os.kill(proc.pid, signum)
        code = proc.wait(timeout=120)
    return code, [line for line in err.read_text().splitlines() if line.strip()]


def _assert_interrupted(code: int, lines: list[str], signum: int) -> None:
    text = "\n".join(lines)
    assert code == 128 + signum, text
    assert "Traceback" not in text, text
    assert [line for line in lines if "interrupted" in line] == lines[-1:], text


def _no_final_files(folder: Path, *names: str) -> None:
    for name in names:
        assert not (folder / name).exists(), f"{name} exists after the interrupt"


def test_ctrl_c_stops_train_in_one_line_without_a_checkpoint(inputs: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--data", inputs / "good.h5", "--checkpoint-dir", run, "--device", "cpu", "--num-epochs", 500,
            "--set", "backbone=test-cnn", "--set", "image_size=80", "--set", "checkpoint_every=400"]  # fmt: skip
    code, lines = _signalled(args, signal.SIGINT, lambda: (run / "train.log").is_file(), tmp_path)
    _assert_interrupted(code, lines, signal.SIGINT)
    assert "--resume auto" in lines[-1]
    _no_final_files(run, "last.pth", "best.pth", "epoch_0400.pth")


def test_sigterm_stops_train_with_exit_143(inputs: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--data", inputs / "good.h5", "--checkpoint-dir", run, "--device", "cpu", "--num-epochs", 500,
            "--set", "backbone=test-cnn", "--set", "image_size=80", "--set", "checkpoint_every=400"]  # fmt: skip
    code, lines = _signalled(args, signal.SIGTERM, lambda: (run / "train.log").is_file(), tmp_path)
    _assert_interrupted(code, lines, signal.SIGTERM)
    _no_final_files(run, "last.pth", "best.pth")


def test_ctrl_c_stops_detect_in_one_line_leaving_a_usable_cache(lfw_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir())[:40]:
        (data / person.name).mkdir(parents=True)
        for image in sorted(person.glob("*.jpg"))[:3]:
            (data / person.name / image.name).symlink_to(image)
    out = tmp_path / "faces.h5"
    code, lines = _signalled(["detect", data, "-o", out, "-j", 1], signal.SIGINT, lambda: True, tmp_path)
    _assert_interrupted(code, lines, signal.SIGINT)
    if out.exists():  # what was committed before the signal is a complete cache a rerun resumes
        from facetool.cache import open_cache

        with open_cache(out) as cache:
            assert len(cache) <= 120


def test_ctrl_c_stops_eval_in_one_line_without_a_report(inputs: Path, lfw_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    args = ["eval", inputs / "model.pth", "--data", lfw_dir, "--pairs", inputs / "pairs.txt", "--out", report,
            "--device", "cpu"]  # fmt: skip
    code, lines = _signalled(args, signal.SIGINT, lambda: True, tmp_path)
    _assert_interrupted(code, lines, signal.SIGINT)
    _no_final_files(report, "report.json", "roc.png")


_SIGNAL_IN_A_FINALIZER = """
import signal, sys, time
from facetool.cli.app import app, main

signal.signal(signal.SIGINT, signal.default_int_handler)  # a run started with `&` inherits SIGINT ignored


class SignalledWhileCollected:
    def __del__(self):
        signal.raise_signal(signal.SIG{name})  # handled at once, inside the finalizer


@app.command("drill")
def drill() -> None:
    SignalledWhileCollected()
    for _ in range(300):
        time.sleep(0.01)
    print("ran on", flush=True)


main(["drill"])
"""


@pytest.mark.parametrize("name", ["INT", "TERM"])
def test_a_signal_handled_inside_a_finalizer_still_stops_the_command(name: str) -> None:
    """Python drops an exception raised in a finalizer; the interrupt must surface anyway, not run on."""
    done = subprocess.run(
        [sys.executable, "-c", _SIGNAL_IN_A_FINALIZER.replace("{name}", name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    _assert_interrupted(done.returncode, lines, getattr(signal, f"SIG{name}"))
    assert "ran on" not in done.stdout
    assert "Exception ignored" not in done.stderr


def test_the_cli_gives_back_the_signal_handlers_and_unraisable_hook(inputs: Path) -> None:
    before = (
        [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)],
        sys.unraisablehook,
        builtins.__import__,
    )
    result = facetool_in_process("dataset", "stats", inputs / "good.h5")
    assert result.returncode == 0, result.stderr
    after = (
        [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)],
        sys.unraisablehook,
        builtins.__import__,
    )
    assert after == before
