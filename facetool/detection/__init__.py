"""Face detection: decoding, SSD detector, face choice, crop, directory scan and the parallel runner.

For one image: `detector = detector_from_config(config)` then `crop_face_from_file(path, detector, config)`.
For a folder: `facetool.detection.runner.detect_directory(data_dir, cache_path, config)`.
"""

from facetool.detection.faces import FaceCrop, crop_face_from_file, crop_face_from_image, detector_from_config
from facetool.detection.images import ImageDecodeError, decode_image, read_image
from facetool.detection.model_files import ModelFiles, resolve_model_files
from facetool.detection.scan import ImageEntry, ScanResult, scan_images
from facetool.detection.ssd import Detector

__all__ = [
    "Detector",
    "FaceCrop",
    "ImageDecodeError",
    "ImageEntry",
    "ModelFiles",
    "ScanResult",
    "crop_face_from_file",
    "crop_face_from_image",
    "decode_image",
    "detector_from_config",
    "read_image",
    "resolve_model_files",
    "scan_images",
]
