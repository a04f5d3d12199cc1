"""Ctrl-C while `facetool` starts: one line and exit 130 at every instant, never an abort or a crash.

A KeyboardInterrupt raised while torch initialises crosses C++ code and aborted the process (exit 134,
`terminate called after throwing an instance of 'python_error'`); one landing while the CLI module loaded
gave a Python traceback and death by SIGINT. The instants are pinned to what the process has loaded so far
(/proc/PID/maps): numpy while the CLI module loads, libtorch while torch initialises.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_helpers import has_mapped
from reliability_helpers import write_small_checkpoint

# (library just loaded, seconds after it appeared): instants of start-up, before any output exists
INSTANTS = [
    ("_multiarray_umath", 0.0),
    ("_multiarray_umath", 0.05),
    ("libtorch_cpu", 0.0),
    ("libtorch_cpu", 0.3),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_checkpoint(tmp_path_factory.mktemp("startup") / "model.pth")


def _interrupt_export_when_loaded(checkpoint: Path, out: Path, library: str, delay: float) -> tuple[int, str]:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "facetool", "export", str(checkpoint), "-o", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not has_mapped(proc.pid, library):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"ended or stalled before loading {library} (exit {proc.wait()})")
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize(("library", "delay"), INSTANTS, ids=[f"{lib}+{d}s" for lib, d in INSTANTS])
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(
    checkpoint: Path, tmp_path: Path, library: str, delay: float
) -> None:
    out = tmp_path / "model.onnx"
    code, err = _interrupt_export_when_loaded(checkpoint, out, library, delay)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 130, err
    assert "Traceback" not in err and "terminate called" not in err, err
    assert len(lines) == 1 and "interrupted" in lines[0], err
    assert not out.exists() and not list(tmp_path.glob(".model.onnx.*.tmp"))
