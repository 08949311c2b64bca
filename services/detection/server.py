"""Detection service: photos in, faces (boxes, landmarks, aligned crops) out. ``python -m services.detection``.

A thin layer over the core pipeline's first stage, :func:`iznet.pipeline.locate` (so crops are cut exactly as
in-process labelling and enrollment cut them, to the chip the request names). The landmarks returned are the
points that placed each crop (the detector's, dlib's eyes, or the eyes found).
"""

from __future__ import annotations

import threading
import time

import click

from iznet.config import load_settings
from iznet import wire
from iznet.data.align import DEFAULT_MARGIN, DEFAULT_SIZE, ChipSpec
from iznet.errors import ImageError, UserInputError
from iznet.imageio import PixelBudget, decode_image, encode_image, image_size
from iznet.pipeline import detector_version, locate
from iznet.registry import create_detector, detector_help, detector_threads
from iznet.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from services import common

MAX_CROP = 512
DEFAULT_CROP = DEFAULT_SIZE  # what Pipeline aligns to when the caller names no chip


class DetectionServicer(detection_pb2_grpc.DetectionServicer):
    def __init__(self, make_detector, max_pixels: int, max_bytes: int, pixel_budget: int = 0):
        self.make_detector = make_detector
        #: Decoded pixels this process holds at once, across its worker threads (default: two of the
        #: largest photos it accepts).
        self.budget = PixelBudget(pixel_budget or 2 * max_pixels)
        self.max_pixels, self.max_bytes = max_pixels, max_bytes
        # OpenCV's cascades keep per-call state in the classifier object: one detector per worker thread (the
        # eye finder that alignment uses keeps its own cascade per thread, iznet.data.align).
        self._local = threading.local()
        # A missing model fails the start, not the first call; its version names every answer.
        self.version = detector_version(make_detector())

    def _detector(self):
        if getattr(self._local, "detector", None) is None:
            self._local.detector = self.make_detector()
        return self._local.detector

    def Detect(self, request: detection_pb2.DetectRequest, context) -> detection_pb2.DetectResponse:
        if not request.images:
            raise UserInputError("empty request: no images")
        if not 0 <= request.crop_size <= MAX_CROP:
            raise UserInputError(f"crop_size {request.crop_size} out of range 0..{MAX_CROP}")
        try:
            chip = ChipSpec.parse(request.chip) if request.chip else None
        except ValueError as exc:
            raise UserInputError(str(exc)) from None
        if chip is not None and request.crop_size and chip.size != request.crop_size:
            raise UserInputError(f"crop_size {request.crop_size} and chip {request.chip} disagree")
        chip = chip or ChipSpec("box", request.crop_size or DEFAULT_CROP, DEFAULT_MARGIN)
        common.observe_batch("detection", "Detect", len(request.images))
        t = {"decode": 0.0, "locate": 0.0, "encode": 0.0}
        want_crops = bool(request.crop_size or request.chip)
        results = []
        for i, img in enumerate(request.images):
            common.check_deadline(context, f"image {i + 1} of {len(request.images)}")
            t0 = time.perf_counter()
            try:
                w, h = image_size(img.data) if img.data else (0, 0)
            except ImageError as exc:
                results.append(detection_pb2.ImageDetections(image_id=img.id, error=str(exc)))
                continue
            # Decoded pixels in flight are bounded per process: a photo waits for room (or is refused).
            with self.budget.hold(min(w * h, self.max_pixels), wait_s=_seconds_left(context, 10.0)):
                try:
                    image = decode_image(img.data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
                except ImageError as exc:
                    results.append(detection_pb2.ImageDetections(image_id=img.id, error=str(exc)))
                    continue
                t1 = time.perf_counter()
                # Every detector runs on a bounded-resolution copy of a huge photo and maps its boxes back.
                located, padded = locate(self._detector(), image, chip, min_score=request.min_score)
                h, w = image.shape[:2]  # as decoded (EXIF orientation applied)
                del image
            if request.max_faces > 0:
                located = sorted(located, key=lambda f: -f.box.area)[:request.max_faces]
            t2 = time.perf_counter()
            if not want_crops:
                out = [wire.located_pb(f) for f in located]
            elif request.raw_crops:
                out = [wire.located_pb(f, pixels=wire.pixels_pb(f.crop)) for f in located]
            else:
                out = [wire.located_pb(f, encode_image(f.crop, ".png")) for f in located]
            t3 = time.perf_counter()
            t["decode"] += (t1 - t0) * 1e3
            t["locate"] += (t2 - t1) * 1e3
            t["encode"] += (t3 - t2) * 1e3
            results.append(detection_pb2.ImageDetections(image_id=img.id, width=w, height=h, faces=out,
                                                         padded=padded))
        return detection_pb2.DetectResponse(results=results, model=common.model_version_pb(self.version),
                                            timings=common.timings_pb(t))

    def GetModel(self, request, context) -> common_pb2.ModelVersion:
        return common.model_version_pb(self.version)


def _seconds_left(context, cap: float) -> float:
    remaining = context.time_remaining() if context is not None else None
    return cap if remaining is None else max(0.0, min(cap, remaining))


@click.command()
@click.option("--detector", default="default", show_default=True,
              help=f"Any detector `iznet models list` shows: {detector_help()}.")
@click.option("--pixel-budget", type=click.IntRange(0), default=0,
              help="Decoded pixels this service holds at once across its workers; a photo waits for room or is "
                   "refused with RESOURCE_EXHAUSTED. [0: twice the largest photo accepted]")
@common.common_click_options
def main(detector, pixel_budget, host, port, metrics_port, max_message_mb, workers, grace, torch_threads):
    """The detection gRPC service."""
    common.limit_threads(torch_threads)
    settings = load_settings()
    servicer = DetectionServicer(lambda: create_detector(detector, store=settings.store, **detector_threads(detector, torch_threads)),
                                 settings.max_image_pixels,
                                 min(settings.max_image_bytes, max_message_mb * common.MiB), pixel_budget)
    common.serve("detection", [detection_pb2.DESCRIPTOR.services_by_name["Detection"].full_name],
                 lambda s: detection_pb2_grpc.add_DetectionServicer_to_server(servicer, s),
                 common.ServerOptions(host, port, metrics_port, max_message_mb, workers, grace))
