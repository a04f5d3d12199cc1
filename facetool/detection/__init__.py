"""Face detection: decoding, SSD detector, face choice, crop, directory scan and the parallel runner.

For one image: `detector = detector_from_config(config)` then `crop_face_from_file(path, detector, config)`.
For a folder: `facetool.detect.runner.detect_directory(data_dir, cache_path, config)`.
"""

from facetool.detect.faces import FaceCrop, crop_face_from_file, crop_face_from_image, detector_from_config
from facetool.detect.images import ImageDecodeError, decode_image, read_image
from facetool.detect.model_files import ModelFiles, resolve_model_files
from facetool.detect.scan import ImageEntry, ScanResult, scan_images
from facetool.detect.ssd import Detector

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
