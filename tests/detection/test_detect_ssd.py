"""The SSD detector against OpenCV's own forward pass, and the two model formats against each other."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from detect_helpers import KNOWN_IMAGES, lfw_rgb

from facetool.config.detect import DetectConfig
from facetool.detection import (
    Detector,
    ImageDecodeError,
    SsdNet,
    create_detector,
    crop_face_from_file,
    crop_face_from_image,
    read_image,
)
from facetool.detection.crop import crop_face, expand_box, resize_to_square
from facetool.detection.select import SELECTORS, select_face
from facetool.errors import ModelFileError


def ssd_detector(files) -> Detector:
    """The `ssd` detector plugin on the given model files, as `facetool detect` builds it."""
    return create_detector(DetectConfig(model_weights=files.weights, model_graph=files.graph))


def direct_boxes(net: cv2.dnn.Net, bgr: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The reference: OpenCV's documented recipe for this network, written out independently."""
    h, w = bgr.shape[:2]
    net.setInput(cv2.dnn.blobFromImage(bgr, 1.0, (300, 300), (104, 177, 123)))
    out = net.forward()[0, 0]
    keep = out[:, 2] >= threshold
    boxes = np.clip(out[keep, 3:7] * [w, h, w, h], 0, [w, h, w, h])
    return boxes, out[keep, 2]


@pytest.mark.parametrize("fmt", ["tensorflow", "caffe"])
def test_boxes_equal_direct_opencv_output(fmt, tf_files, caffe_files, lfw_dir: Path):
    files = {"tensorflow": tf_files, "caffe": caffe_files}[fmt]
    detector = SsdNet(files, threshold=0.5)
    readers = {
        "tensorflow": lambda: cv2.dnn.readNetFromTensorflow(str(files.weights), str(files.graph)),
        "caffe": lambda: cv2.dnn.readNetFromCaffe(str(files.graph), str(files.weights)),
    }
    net = readers[fmt]()
    for rel in KNOWN_IMAGES:
        bgr = cv2.imread(str(lfw_dir / rel), cv2.IMREAD_COLOR)
        want_boxes, want_scores = direct_boxes(net, bgr, 0.5)
        boxes, scores = detector.detect(read_image(lfw_dir / rel, 10**8))
        assert len(boxes) == len(want_boxes) >= 1, rel
        order = np.argsort(-want_scores, kind="stable")
        np.testing.assert_allclose(boxes, want_boxes[order], atol=1e-3, err_msg=rel)
        np.testing.assert_allclose(scores, want_scores[order], atol=1e-6, err_msg=rel)
        # a 250x250 LFW image has the person's face around the centre
        x1, y1, x2, y2 = boxes[0]
        assert 60 < (x1 + x2) / 2 < 190 and 60 < (y1 + y2) / 2 < 190, rel


def test_formats_give_near_identical_boxes(tf_files, caffe_files, lfw_dir: Path):
    tf, caffe = SsdNet(tf_files), SsdNet(caffe_files)
    names = sorted(lfw_dir.glob("B*/*_0001.jpg"))[:12]
    for path in names:
        rgb = read_image(path, 10**8)
        boxes_tf, scores_tf = tf.detect(rgb)
        boxes_caffe, scores_caffe = caffe.detect(rgb)
        assert len(boxes_tf) >= 1 and len(boxes_caffe) >= 1, path.name
        assert np.abs(boxes_tf[0] - boxes_caffe[0]).max() < 2.0, path.name
        assert abs(scores_tf[0] - scores_caffe[0]) < 0.01, path.name


def test_threshold_filters_and_orders(tf_files, lfw_dir: Path):
    rgb = lfw_rgb(lfw_dir, KNOWN_IMAGES[0])
    low = SsdNet(tf_files, threshold=0.05).detect(rgb)[1]
    high = SsdNet(tf_files, threshold=0.5).detect(rgb)[1]
    assert len(low) > len(high) >= 1
    assert np.all(np.diff(low) <= 0) and low.min() >= 0.05
    blank = np.full((250, 250, 3), 127, np.uint8)
    assert len(SsdNet(tf_files, threshold=0.5).detect(blank)[0]) == 0


def test_unloadable_model_file_names_it(tmp_path: Path, tf_files):
    bad = tmp_path / "opencv_face_detector_uint8.pb"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelFileError, match=str(bad)):
        SsdNet(type(tf_files)("tensorflow", bad, tf_files.graph, "test"))


def test_selectors_pick_as_named():
    boxes = np.array([[0, 0, 50, 50], [100, 100, 130, 130], [10, 10, 200, 200]], np.float32)
    scores = np.array([0.99, 0.9, 0.7], np.float32)
    shape = (230, 230)
    assert select_face("largest", boxes, scores, shape) == 2
    assert select_face("center", boxes, scores, shape) == 1
    assert select_face("score", boxes, scores, shape) == 0
    assert set(SELECTORS) == set(DetectConfig.model_fields["select"].annotation.__args__)
    with pytest.raises(ValueError, match="unknown face selection"):
        select_face("biggest", boxes, scores, shape)


def test_margin_in_pixels_and_fraction_and_clipping():
    assert expand_box((100, 100, 200, 150), 20, 1000, 1000) == (90, 90, 210, 160)
    assert expand_box((100, 100, 200, 150), 0.2, 1000, 1000) == (90, 95, 210, 155)
    assert expand_box((5, 5, 95, 95), 0.5, 100, 100) == (0, 0, 100, 100)


def test_crop_keeps_aspect_and_pads_to_square():
    tall = np.full((200, 100, 3), 200, np.uint8)
    square = resize_to_square(tall, 160)
    assert square.shape == (160, 160, 3) and square.dtype == np.uint8
    assert square[:, 40:120].min() == 200  # the image, 80 px wide (half of 160), centred
    assert square[:, :40].max() == 0 and square[:, 120:].max() == 0
    face = crop_face(np.arange(300 * 300 * 3, dtype=np.uint8).reshape(300, 300, 3), (0, 0, 300, 150), 0, 64)
    assert face.shape == (64, 64, 3) and face[:16].max() == 0 and face[48:].max() == 0


def test_crop_face_from_file_on_lfw(tf_files, lfw_dir: Path):
    config = DetectConfig(image_size=96)
    crop = crop_face_from_file(lfw_dir / KNOWN_IMAGES[1], ssd_detector(tf_files), config)
    assert crop.detected and crop.face.shape == (96, 96, 3) and 0.5 <= crop.score <= 1
    x1, y1, x2, y2 = crop.box
    assert 0 <= x1 < x2 <= 250 and 0 <= y1 < y2 <= 250
    blank = Path(lfw_dir.parent, "does-not-exist.jpg")
    with pytest.raises(ImageDecodeError, match=r"does-not-exist\.jpg: image file not found"):
        crop_face_from_file(blank, ssd_detector(tf_files), config)
    assert math.isfinite(crop.score)


def two_faces(lfw_dir: Path) -> np.ndarray:
    """Two real LFW photos side by side: a 250-px one whose face the SSD scores lower, and a 130-px one whose
    smaller face it scores higher."""
    canvas = np.zeros((250, 400, 3), np.uint8)
    canvas[:, :250] = lfw_rgb(lfw_dir, "Alejandro_Lembo/Alejandro_Lembo_0001.jpg")
    small = lfw_rgb(lfw_dir, "Adriana_Lima/Adriana_Lima_0001.jpg")
    canvas[60:190, 270:400] = cv2.resize(small, (130, 130), interpolation=cv2.INTER_AREA)
    return canvas


def test_select_crops_the_largest_or_the_best_scoring_face(tf_files, lfw_dir: Path):
    rgb = two_faces(lfw_dir)
    detector = ssd_detector(tf_files)
    found = detector.detect(rgb)
    boxes, scores = found.boxes, found.scores
    assert found.landmarks is None and len(boxes) == 2
    big, small = (0, 1) if boxes[0, 0] < 250 else (1, 0)
    assert boxes[big, 2] <= 250 and boxes[small, 0] >= 270, boxes
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert areas[big] > 2 * areas[small] and scores[small] > scores[big] + 0.02, (areas, scores)
    for select, face in (("largest", big), ("score", small)):
        config = DetectConfig(select=select, image_size=64)
        crop = crop_face_from_image(rgb, detector, config)
        assert crop.box == tuple(float(v) for v in boxes[face]) and crop.score == scores[face], select
        assert np.array_equal(crop.face, crop_face(rgb, boxes[face], config.margin, 64)), select


@pytest.mark.parametrize("shape", [(1, 1), (1, 1000), (1000, 3), (7, 5)])
def test_degenerate_shapes_still_give_a_square(shape):
    rgb = np.full((*shape, 3), 77, np.uint8)
    assert resize_to_square(rgb, 160).shape == (160, 160, 3)
    assert crop_face(rgb, (0, 0, shape[1], shape[0]), 0.4, 32).shape == (32, 32, 3)
    assert crop_face(rgb, (shape[1] - 0.5, shape[0] - 0.5, shape[1], shape[0]), 0, 32).max() == 77


def test_fallback_is_the_whole_image(tf_files):
    from facetool.detection import crop_face_from_image

    sky = np.zeros((120, 240, 3), np.uint8)
    sky[:, :, 2] = 200
    crop = crop_face_from_image(sky, ssd_detector(tf_files), DetectConfig(image_size=64))
    assert not crop.detected and crop.box is None and math.isnan(crop.score)
    assert crop.face.shape == (64, 64, 3)
    assert (crop.face[16:48, :, 2] == 200).all() and crop.face[:16].max() == 0 and crop.face[48:].max() == 0
