"""The core's results on the wire: :mod:`iznet.v1` messages to and from the pipeline's own types.

One place for every conversion, used by the services, the gateway and the client alike, so an answer that
crossed the network decodes into the very :class:`~iznet.pipeline.LabelResult` the in-process pipeline
gives, field for field (floats to float32 precision).
"""

from __future__ import annotations

import numpy as np

from iznet.detection.types import FaceBox
from iznet.gallery.gallery import Candidate, Match
from iznet.pipeline import FaceResult, LabelOptions, LabelResult, LocatedFace, gallery_version, model_version
from iznet.v1 import common_pb2, gallery_pb2, gateway_pb2


# ------------------------------------------------------------------------------------------- pixels

def pixels_pb(image: np.ndarray) -> common_pb2.Pixels:
    """A BGR uint8 array as raw pixels (crops between the services: no PNG encode and decode per hop)."""
    image = np.ascontiguousarray(image, np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"raw pixels are height x width x 3 BGR, not {image.shape}")
    return common_pb2.Pixels(width=image.shape[1], height=image.shape[0], bgr=image.tobytes())


def pixels_from_pb(p: common_pb2.Pixels, max_pixels: int) -> np.ndarray:
    from iznet.errors import ImageError

    if p.width < 1 or p.height < 1:
        raise ImageError(f"raw pixels have no pixels ({p.width}x{p.height})")
    if p.width * p.height > max_pixels:
        raise ImageError(f"raw pixels too large: {p.width}x{p.height} > limit {max_pixels:,} pixels")
    if len(p.bgr) != p.width * p.height * 3:
        raise ImageError(f"raw pixels: {len(p.bgr):,} bytes is not {p.width}x{p.height}x3")
    return np.frombuffer(p.bgr, np.uint8).reshape(p.height, p.width, 3)


def image_from_pb(img: common_pb2.Image, *, max_pixels: int, max_bytes: int) -> np.ndarray:
    """An Image message's pixels: its raw pixels when it carries them, else its decoded file bytes."""
    if img.HasField("pixels"):
        return pixels_from_pb(img.pixels, max_pixels)
    from iznet.imageio import decode_image

    return decode_image(img.data, max_pixels=max_pixels, max_bytes=max_bytes)


def crop_image_pb(crop) -> common_pb2.Image:
    """A crop as the detection service handed it over (encoded bytes, or raw Pixels) as an Image to embed."""
    if isinstance(crop, common_pb2.Pixels):
        return common_pb2.Image(pixels=crop)
    return common_pb2.Image(data=crop)


# ------------------------------------------------------------------------------------------- versions

def model_version_pb(v: dict | None) -> common_pb2.ModelVersion:
    v = model_version(v, (v or {}).get("kind", ""))
    return common_pb2.ModelVersion(name=v.name, version=v.version, digest=v.digest, kind=v.kind, chip=v.chip)


def model_version_from_pb(v: common_pb2.ModelVersion):
    return model_version({"name": v.name, "version": v.version, "digest": v.digest, "kind": v.kind,
                          "chip": v.chip}, v.kind)


def gallery_version_pb(v: dict | None) -> common_pb2.GalleryVersion:
    v = gallery_version(v)
    if not v:
        return common_pb2.GalleryVersion()
    return common_pb2.GalleryVersion(name=v.name, version=v.version, model=model_version_pb(v.model),
                                     people=v.people, exemplars=v.exemplars, threshold=v.threshold)


def gallery_version_from_pb(v: common_pb2.GalleryVersion):
    if not v.name:
        return gallery_version(None)
    return gallery_version({"name": v.name, "version": v.version, "model": model_version_from_pb(v.model),
                            "people": v.people, "exemplars": v.exemplars, "threshold": v.threshold})


# ---------------------------------------------------------------------------------------------- faces

def box_pb(f: FaceBox) -> common_pb2.Box:
    return common_pb2.Box(x1=f.x1, y1=f.y1, x2=f.x2, y2=f.y2, score=f.score)


def landmarks_pb(points: np.ndarray | None) -> common_pb2.Landmarks:
    return common_pb2.Landmarks(points=[common_pb2.Point(x=float(x), y=float(y))
                                        for x, y in (points if points is not None else [])])


def landmarks_from_pb(lm: common_pb2.Landmarks | None) -> np.ndarray | None:
    if lm is None or not len(lm.points):
        return None
    return np.array([[p.x, p.y] for p in lm.points], np.float32)


def box_from_pb(box: common_pb2.Box, lm: common_pb2.Landmarks | None = None) -> FaceBox:
    return FaceBox(box.x1, box.y1, box.x2, box.y2, box.score, landmarks_from_pb(lm))


def identity_pb(m: Match) -> common_pb2.Identity:
    return common_pb2.Identity(name=m.name, unknown=m.unknown, score=m.score, distance=m.distance,
                               threshold=m.threshold, person_id=m.person_id, nearest=m.nearest, rule=m.rule)


def candidates_pb(m: Match) -> list[common_pb2.Identity]:
    return [common_pb2.Identity(name=c.name, person_id=c.person_id, score=c.score,
                                distance=float(np.sqrt(max(0.0, 2.0 - 2.0 * c.score))), threshold=m.threshold)
            for c in m.candidates]


def match_from_pb(identity: common_pb2.Identity, candidates=()) -> Match:
    return Match(identity.name or "unknown", identity.unknown, identity.score, identity.distance, identity.threshold,
                 identity.person_id, identity.nearest, identity.rule or "centroid",
                 [Candidate(c.name, c.person_id, c.score) for c in candidates])


def match_pb(m: Match) -> gallery_pb2.Match:
    """A gallery Search answer for one vector."""
    return gallery_pb2.Match(identity=identity_pb(m), candidates=candidates_pb(m))


def located_pb(f: LocatedFace, crop: bytes = b"", pixels: common_pb2.Pixels | None = None) -> common_pb2.Face:
    """A face the detection service found: the box, the points that placed its crop, the crop (encoded, or
    raw ``pixels``), how."""
    return common_pb2.Face(box=box_pb(f.box), landmarks=landmarks_pb(f.landmarks), crop=crop, aligned=f.aligned,
                           crop_pixels=pixels)


def located_from_pb(f: common_pb2.Face) -> LocatedFace:
    """The crop stays as it came (encoded bytes, or the raw ``Pixels`` message) to be passed on unchanged."""
    crop = f.crop_pixels if f.HasField("crop_pixels") else f.crop
    return LocatedFace(box_from_pb(f.box), crop, landmarks_from_pb(f.landmarks), f.aligned)


# ---------------------------------------------------------------------------------------------- label

def options_pb(o: LabelOptions, gallery: str = "", annotate: bool = False) -> gateway_pb2.LabelOptions:
    return gateway_pb2.LabelOptions(gallery=gallery, annotate=annotate, min_score=o.min_score,
                                    threshold=o.threshold or 0.0, return_crops=o.return_crops, min_face=o.min_face)


def options_from_pb(o: gateway_pb2.LabelOptions) -> LabelOptions:
    """The proto's zeros mean "the default" (proto3 has no unset floats)."""
    from iznet.pipeline import DEFAULT_MIN_FACE

    return LabelOptions(min_face=o.min_face or DEFAULT_MIN_FACE, min_score=o.min_score,
                        threshold=o.threshold if o.threshold else None, return_crops=o.return_crops)


def label_result_pb(r: LabelResult, annotated: bytes = b"") -> gateway_pb2.LabelResponse:
    faces = []
    for f in r.faces:
        crop = f.crop if isinstance(f.crop, (bytes, bytearray)) else b""
        faces.append(common_pb2.Face(box=box_pb(f.box), landmarks=landmarks_pb(f.landmarks),
                                     identity=identity_pb(f.identity), crop=crop, aligned=f.aligned, note=f.note,
                                     candidates=candidates_pb(f.identity)))
    return gateway_pb2.LabelResponse(
        image_id=r.image_id, width=r.width, height=r.height, faces=faces, annotated=annotated or r.annotated,
        detector=model_version_pb(r.detector), embedder=model_version_pb(r.embedder),
        gallery=gallery_version_pb(r.gallery), timings=common_pb2.Timings(ms=r.timings), error=r.error,
        padded=r.padded, embedding_batch=r.embedding_batch)


def label_result_from_pb(r: gateway_pb2.LabelResponse) -> LabelResult:
    faces = [FaceResult(box_from_pb(f.box), landmarks_from_pb(f.landmarks), f.aligned,
                        match_from_pb(f.identity, f.candidates), f.crop or None, f.note) for f in r.faces]
    return LabelResult(r.image_id, r.width, r.height, faces, model_version_from_pb(r.detector),
                       model_version_from_pb(r.embedder), gallery_version_from_pb(r.gallery), dict(r.timings.ms),
                       r.padded, r.error, r.annotated, r.embedding_batch)
