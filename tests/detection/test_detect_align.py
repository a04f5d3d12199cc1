"""Five-point alignment against independent implementations, and MTCNN's landmarks on real LFW photos.

The transform is checked against scikit-image's `SimilarityTransform.estimate` (what insightface's `estimate_norm`
calls), the crop against insightface's `norm_crop` written out with it, and the result on real faces: MTCNN
finds the landmarks of an aligned face on the template, and a rotated photo aligns back onto the upright one.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from detect_helpers import KNOWN_IMAGES, lfw_rgb

from facetool.cache import FaceRecord
from facetool.config.detect import DetectConfig
from facetool.detection import (
    Detections,
    create_detector,
    crop_face_from_image,
    similarity_transform,
    template,
)
from facetool.detection.align import TEMPLATE_112, align_face
from facetool.detection.crop import crop_face
from facetool.detection.faces import crop_from_detections
from facetool.detection.runner import DetectSummary

transform = pytest.importorskip("skimage.transform")
pytestmark = pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")

MTCNN = DetectConfig(detector="mtcnn", align="five-point")
ARCFACE_DST = np.array(  # insightface's recognition/common/face_align.py, typed in again
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def norm_crop(img: np.ndarray, landmark: np.ndarray, image_size: int) -> np.ndarray:
    """insightface's `estimate_norm` + `norm_crop`, on scikit-image's estimator."""
    if image_size % 112 == 0:
        ratio, diff_x = image_size / 112.0, 0.0
    else:
        ratio = image_size / 128.0
        diff_x = 8.0 * ratio
    dst = ARCFACE_DST * ratio
    dst[:, 0] += diff_x
    tform = transform.SimilarityTransform()
    tform.estimate(landmark, dst)
    return cv2.warpAffine(img, tform.params[0:2, :], (image_size, image_size), borderValue=0.0)


@pytest.fixture(scope="module")
def mtcnn():
    return create_detector(MTCNN)


def rotated(rgb: np.ndarray, degrees: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, matrix, (width, height))


def test_similarity_transform_equals_scikit_image():
    rng = np.random.default_rng(30)
    cases = [(rng.uniform(0, 250, (5, 2)), ARCFACE_DST) for _ in range(20)]
    cases.append(
        (ARCFACE_DST[:, ::-1] * 2.3 + 7, ARCFACE_DST)
    )  # mirrored points: a reflection is not allowed
    cases.append((rng.normal(0, 1, (40, 2)), rng.normal(0, 1, (40, 2))))
    for src, dst in cases:
        reference = transform.SimilarityTransform()
        assert reference.estimate(src, dst)
        np.testing.assert_allclose(similarity_transform(src, dst), reference.params[:2], atol=1e-9)


def test_template_follows_insightface_for_every_size():
    np.testing.assert_array_equal(template(112), ARCFACE_DST)
    np.testing.assert_array_equal(TEMPLATE_112, ARCFACE_DST)
    np.testing.assert_allclose(template(224), ARCFACE_DST * 2)
    np.testing.assert_allclose(template(160), ARCFACE_DST * 1.25 + [10.0, 0.0])


@pytest.mark.parametrize("size", [112, 160, 224])
def test_aligned_crop_equals_insightface_norm_crop(size: int, mtcnn, lfw_dir: Path):
    """Pixel for pixel, on MTCNN's landmarks of a real photo (in float64, as insightface's estimator computes)."""
    rgb = lfw_rgb(lfw_dir, KNOWN_IMAGES[0])
    landmarks = mtcnn.detect(rgb).landmarks[0].astype(np.float64)
    assert np.array_equal(align_face(rgb, landmarks, size), norm_crop(rgb, landmarks, size))


def test_mtcnn_finds_the_aligned_landmarks_on_the_template(mtcnn, lfw_dir: Path):
    """Each photo's landmarks, carried by the alignment, lie near the template (the least-squares residual of a
    real face's pose); MTCNN run again on the 112-px aligned crop finds them there too."""
    for rel in KNOWN_IMAGES:
        rgb = lfw_rgb(lfw_dir, rel)
        found = mtcnn.detect(rgb)
        assert len(found) >= 1 and found.landmarks.shape == (len(found), 5, 2), rel
        matrix = similarity_transform(found.landmarks[0], ARCFACE_DST)
        carried = found.landmarks[0] @ matrix[:, :2].T + matrix[:, 2]
        residual = np.linalg.norm(carried - ARCFACE_DST, axis=1)
        assert residual.max() < 6.0 and residual.mean() < 3.0, (rel, residual)
        aligned = crop_face_from_image(rgb, mtcnn, MTCNN)
        assert aligned.aligned and aligned.face.shape == (112, 112, 3), rel
        again = mtcnn.detect(aligned.face)
        assert len(again) >= 1, rel
        distance = np.linalg.norm(again.landmarks[0] - ARCFACE_DST, axis=1)
        assert distance.max() < 9.0 and distance.mean() < 6.0, (rel, distance)  # eyes lie 35 px apart


def test_a_rotated_photo_aligns_back_far_better_than_the_ssd_crop(mtcnn, lfw_dir: Path):
    """Measure: mean absolute grey-level difference (0-255) over the central 56 x 56 of the 112-px faces of a
    photo and of the same photo rotated by 25 degrees; and their pixel correlation."""
    ssd_config = DetectConfig(image_size=112)
    ssd = create_detector(ssd_config)

    def grey(face: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float64)[28:84, 28:84]

    aligned_diff, ssd_diff, aligned_corr, ssd_corr = [], [], [], []
    for rel in KNOWN_IMAGES:
        upright = lfw_rgb(lfw_dir, rel)
        turned = rotated(upright, 25)
        for detector, config, diffs, corrs in (
            (mtcnn, MTCNN, aligned_diff, aligned_corr),
            (ssd, ssd_config, ssd_diff, ssd_corr),
        ):
            a = grey(crop_face_from_image(upright, detector, config).face)
            b = grey(crop_face_from_image(turned, detector, config).face)
            diffs.append(np.abs(a - b).mean())
            corrs.append(np.corrcoef(a.ravel(), b.ravel())[0, 1])
        assert aligned_diff[-1] < ssd_diff[-1], (rel, aligned_diff, ssd_diff)
    assert np.mean(aligned_diff) < 0.5 * np.mean(ssd_diff), (aligned_diff, ssd_diff)
    assert np.mean(aligned_corr) > 0.7 and np.mean(ssd_corr) < 0.4, (aligned_corr, ssd_corr)


def test_no_face_two_faces_and_a_tiny_image(mtcnn, lfw_dir: Path):
    sky = np.zeros((120, 240, 3), np.uint8)
    sky[:, :, 2] = 200
    none = mtcnn.detect(sky)
    assert len(none) == 0 and none.landmarks.shape == (0, 5, 2)
    crop = crop_face_from_image(sky, mtcnn, MTCNN)
    assert not crop.detected and crop.box is None and math.isnan(crop.score) and crop.landmarks is None
    assert crop.face.shape == (112, 112, 3)

    canvas = np.zeros((250, 400, 3), np.uint8)
    canvas[:, :250] = lfw_rgb(lfw_dir, "Alejandro_Lembo/Alejandro_Lembo_0001.jpg")
    small = lfw_rgb(lfw_dir, "Adriana_Lima/Adriana_Lima_0001.jpg")
    canvas[60:190, 270:400] = cv2.resize(small, (130, 130), interpolation=cv2.INTER_AREA)
    two = mtcnn.detect(canvas)
    assert len(two) == 2 and (np.diff(two.scores) <= 0).all()
    for box, points in zip(two.boxes, two.landmarks, strict=True):
        inside = (
            (points[:, 0] >= box[0])
            & (points[:, 0] <= box[2])
            & (points[:, 1] >= box[1])
            & (points[:, 1] <= box[3])
        )
        assert inside.all(), (box, points)
    big = int(np.argmax((two.boxes[:, 2] - two.boxes[:, 0]) * (two.boxes[:, 3] - two.boxes[:, 1])))
    assert two.boxes[big, 2] <= 250
    chosen = crop_face_from_image(canvas, mtcnn, MTCNN)
    assert chosen.aligned and np.array_equal(chosen.landmarks, two.landmarks[big])

    face = lfw_rgb(lfw_dir, KNOWN_IMAGES[0])
    tiny = cv2.resize(face, (16, 16), interpolation=cv2.INTER_AREA)  # below min_face_size 20
    assert len(mtcnn.detect(tiny)) == 0
    results = mtcnn.detect_batch([face, tiny, face])
    assert [len(r) for r in results] == [len(results[0]), 0, len(results[0])] and len(results[0]) >= 1
    np.testing.assert_allclose(results[0].landmarks, results[2].landmarks)


def test_a_face_without_landmarks_falls_back_to_the_box_and_is_counted(lfw_dir: Path):
    rgb = lfw_rgb(lfw_dir, KNOWN_IMAGES[0])
    box = np.array([[70, 60, 170, 190]], np.float32)
    found = Detections(box, np.array([0.9], np.float32), np.full((1, 5, 2), np.nan, np.float32))
    crop = crop_from_detections(rgb, found, MTCNN)
    assert crop.detected and not crop.aligned
    assert np.array_equal(crop.face, crop_face(rgb, box[0], MTCNN.margin, 112))
    summary = DetectSummary("data", "faces.h5", "mtcnn", 1, aligning=True)
    for landmarks in (crop.landmarks, ARCFACE_DST.astype(np.float32)):
        summary.count(FaceRecord("a/1.jpg", "a", 1, 1, crop.face, crop.box, crop.score, True, landmarks))
    assert (summary.faces, summary.unaligned) == (2, 1)


def test_five_point_with_a_detector_without_landmarks_is_one_line():
    from facetool.errors import UsageError

    with pytest.raises(UsageError) as caught:
        create_detector(DetectConfig(align="five-point"))
    message = str(caught.value)
    assert (
        "\n" not in message
        and "detect.align = 'five-point'" in message
        and "detect.detector = 'ssd'" in message
    )
