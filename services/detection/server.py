"""Detection service: photos in, faces (boxes, landmarks, aligned crops) out. ``python -m services.detection``.

A thin layer over the core pipeline's own stages, :meth:`iznet.pipeline.Pipeline.detect` and
:meth:`~iznet.pipeline.Pipeline.align_one` (so crops are framed exactly as in-process labelling and enrollment
frame them). The landmarks returned are the points the crop was levelled by (the detector's, or the eyes found).
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import click
import cv2

from iznet.config import load_settings
from iznet.detection.types import FaceBox
from iznet.detection.teachers import make_teacher, ultralight_path
from iznet.errors import ImageError, UserInputError
from iznet.imageio import decode_image, encode_image
from iznet.pipeline import Pipeline
from iznet.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from services import common

MAX_CROP = 512
DEFAULT_CROP = 160  # iznet.data.align.DEFAULT_SIZE, what Pipeline aligns to


def detector_version(spec: str) -> dict:
    """Name and content digest of a teacher detector's model file.

    SEAM: issue 4's trained detector comes from the artifact store with its own version."""
    if spec == "haar":
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    elif spec.startswith("ultralight-"):
        path = ultralight_path(int(spec.rsplit("-", 1)[1]))
    else:
        path = Path(spec)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""
    return {"name": spec if not spec.endswith(".onnx") else path.stem, "version": "teacher",
            "digest": f"sha256:{digest}", "kind": "detector"}


class DetectionServicer(detection_pb2_grpc.DetectionServicer):
    def __init__(self, make_detector, version: dict, max_pixels: int, max_bytes: int):
        self.make_detector, self.version = make_detector, version
        self.max_pixels, self.max_bytes = max_pixels, max_bytes
        # OpenCV's cascades keep per-call state in the classifier object: one detector per worker thread (the
        # eye finder that alignment uses keeps its own cascade per thread, iznet.data.align).
        self._local = threading.local()
        make_detector()  # a missing model fails the start, not the first call

    def _detector(self):
        if getattr(self._local, "detector", None) is None:
            self._local.detector = self.make_detector()
        return self._local.detector

    def Detect(self, request: detection_pb2.DetectRequest, context) -> detection_pb2.DetectResponse:
        if not request.images:
            raise UserInputError("empty request: no images")
        if not 0 <= request.crop_size <= MAX_CROP:
            raise UserInputError(f"crop_size {request.crop_size} out of range 0..{MAX_CROP}")
        common.observe_batch("detection", "Detect", len(request.images))
        t = {"decode": 0.0, "detect": 0.0, "crop": 0.0}
        results = []
        for i, img in enumerate(request.images):
            common.check_deadline(context, f"image {i + 1} of {len(request.images)}")
            t0 = time.perf_counter()
            try:
                image = decode_image(img.data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
            except ImageError as exc:
                results.append(detection_pb2.ImageDetections(image_id=img.id, error=str(exc)))
                continue
            t1 = time.perf_counter()
            pipe = Pipeline(self._detector(), None, size=request.crop_size or DEFAULT_CROP,
                            min_score=request.min_score)
            faces, _padded = pipe.detect(image)
            if request.max_faces > 0:
                faces = sorted(faces, key=lambda f: -f.area)[:request.max_faces]
            t2 = time.perf_counter()
            aligned = [pipe.align_one(image, f) for f in faces]
            out = []
            for f, (crop, landmarks, _how) in zip(faces, aligned):
                box, lm = common.face_box_pb(FaceBox(f.x1, f.y1, f.x2, f.y2, f.score, landmarks))
                out.append(common_pb2.Face(box=box, landmarks=lm,
                                           crop=encode_image(crop, ".png") if request.crop_size else b""))
            t3 = time.perf_counter()
            t["decode"] += (t1 - t0) * 1e3
            t["detect"] += (t2 - t1) * 1e3
            t["crop"] += (t3 - t2) * 1e3
            h, w = image.shape[:2]
            results.append(detection_pb2.ImageDetections(image_id=img.id, width=w, height=h, faces=out))
        return detection_pb2.DetectResponse(results=results, model=common.model_version_pb(self.version),
                                            timings=common.timings_pb(t))

    def GetModel(self, request, context) -> common_pb2.ModelVersion:
        return common.model_version_pb(self.version)


@click.command()
@click.option("--detector", default="haar", show_default=True,
              help="Detector: haar, ultralight-320, ultralight-640 or an Ultra-Light .onnx path.")
@common.common_click_options
def main(detector, host, port, metrics_port, max_message_mb, workers, grace, torch_threads):
    """The detection gRPC service."""
    common.limit_threads(torch_threads)
    settings = load_settings()
    servicer = DetectionServicer(lambda: make_teacher(detector), detector_version(detector), settings.max_image_pixels,
                                 min(settings.max_image_bytes, max_message_mb * common.MiB))
    common.serve("detection", [detection_pb2.DESCRIPTOR.services_by_name["Detection"].full_name],
                 lambda s: detection_pb2_grpc.add_DetectionServicer_to_server(servicer, s),
                 common.ServerOptions(host, port, metrics_port, max_message_mb, workers, grace))
