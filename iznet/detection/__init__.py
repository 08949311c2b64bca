"""Face detection: the common types, box geometry, the teacher detectors and (later) the trained detector.

Every detector implements :class:`iznet.detection.types.Detector`: ``detect(image_bgr) -> list[FaceBox]``,
with boxes in the pixel coordinates of the image it was given.
"""

from iznet.detection.types import Detector, FaceBox

__all__ = ["Detector", "FaceBox"]
