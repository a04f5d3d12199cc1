"""Detection started from a process that already ran OpenCV's thread pool (a test suite, a notebook) must not hang.

A worker forked from such a process inherited the pool's locks without its threads, and its first
`cv2.setNumThreads` waited forever.
"""

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, cv2, numpy as np
from facetool.config.detect import DetectConfig
from facetool.detection.runner import detect_directory

image = np.random.default_rng(0).integers(0, 255, (3000, 3000, 3), dtype=np.uint8)
for _ in range(3):
    cv2.GaussianBlur(image, (31, 31), 0)
assert cv2.getNumThreads() > 1
summary = detect_directory(sys.argv[1], sys.argv[2], DetectConfig(workers=2))
print(summary.faces, summary.images)
assert cv2.getNumThreads() > 1
"""


def test_detect_after_opencv_ran_threads_in_the_parent(lfw_dir: Path, ssd_dir: Path, tmp_path: Path):
    data = tmp_path / "data"
    for name in ("Colin_Powell", "Tony_Blair"):  # 18 images: two tasks of BATCH_IMAGES, so both workers run
        (data / name).mkdir(parents=True)
        for image in sorted((lfw_dir / name).glob("*.jpg"))[:9]:
            (data / name / image.name).symlink_to(image)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data), str(tmp_path / "faces.h5")],
        env={"FACETOOL_MODELS": str(ssd_dir), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["18", "18"]
