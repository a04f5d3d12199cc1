"""Face detection: decoding, detector plugins (SSD, MTCNN), face choice, crop or five-point alignment, directory
scan and the parallel runner.

For one image: `detector = detector_from_config(config)` then `crop_face_from_file(path, detector, config)`.
For a folder: `facetool.detection.runner.detect_directory(data_dir, cache_path, config)`.
"""

from facetool.detection.align import align_face, similarity_transform, template
from facetool.detection.detectors import Detections, Detector, available_detectors, create_detector
from facetool.detection.faces import FaceCrop, crop_face_from_file, crop_face_from_image, detector_from_config
from facetool.detection.images import ImageDecodeError, decode_image, read_image
from facetool.detection.model_files import ModelFiles, resolve_model_files
from facetool.detection.scan import ImageEntry, ScanResult, scan_images
from facetool.detection.ssd import SsdNet

__all__ = [
    "Detections",
    "Detector",
    "FaceCrop",
    "ImageDecodeError",
    "ImageEntry",
    "ModelFiles",
    "ScanResult",
    "SsdNet",
    "align_face",
    "available_detectors",
    "create_detector",
    "crop_face_from_file",
    "crop_face_from_image",
    "decode_image",
    "detector_from_config",
    "read_image",
    "resolve_model_files",
    "scan_images",
    "similarity_transform",
    "template",
]
