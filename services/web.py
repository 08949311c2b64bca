"""The web page: label a photo, browse and manage a gallery's people, see versions, models and jobs.
``python -m services.web --gateway HOST:PORT --embedding HOST:PORT --gallery HOST:PORT --store DIR``.

A thin HTTP app (the standard library's ThreadingHTTPServer) beside the gateway: the static page in
``services/web_static/`` and a small JSON API that calls the same gRPC APIs a client uses, with no logic of its
own beyond presentation:

- labelling goes through the gateway (:class:`iznet.client.GatewayClient`), whose API key the page sends;
- people, rename, remove and the served version through the gallery service;
- enrolling a photo: the gateway's Label with crops (the detection service cuts the chip the served embedder
  wants), the person's face chosen as the core chooses it (largest and most central), the embedding service
  for its vector (pinned to the gallery's model) and the gallery service's Enroll: one result per photo;
- read-only from the store, where no gRPC call exists: exemplar thumbnails (crops), the gallery's version
  history, the model cards (:func:`iznet.registry.list_models`) and the job records (``<store>/jobs``).

When the gateway requires an API key, every ``/api`` call needs the ``X-Api-Key`` header, and the gateway
decides: the key is checked by an empty Label call (refused UNAUTHENTICATED with the gateway's reason before
anything else). Errors are JSON ``{"code", "error"}`` with the gRPC code name and the API's own reason.
"""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
import signal
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import click
import grpc

log = logging.getLogger("iznet.web")

STATIC = Path(__file__).with_name("web_static")
MAX_UPLOAD = 32 * 2**20  # the gRPC message limit every server has (--max-message-mb)
KEY_TTL_S = 30.0

HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
               "ALREADY_EXISTS": 409, "FAILED_PRECONDITION": 409, "RESOURCE_EXHAUSTED": 413,
               "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}


class ApiError(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def _rpc_error(exc: grpc.RpcError) -> ApiError:
    return ApiError(exc.code().name, exc.details() or exc.code().name.lower())


class WebBackend:
    """The calls behind the page (plain methods, testable without HTTP)."""

    def __init__(self, gateway: str, embedding: str, gallery: str, store: str | Path, default_gallery: str = "default",
                 timeout: float = 60.0):
        from iznet.v1 import embedding_pb2_grpc, gallery_pb2_grpc

        self.gateway_address, self.store, self.default_gallery = gateway, Path(store), default_gallery
        self.timeout = timeout
        opts = [("grpc.max_receive_message_length", MAX_UPLOAD * 2), ("grpc.max_send_message_length", MAX_UPLOAD * 2)]
        self._emb_channel = grpc.insecure_channel(embedding, options=opts)
        self._gal_channel = grpc.insecure_channel(gallery, options=opts)
        self.embedding = embedding_pb2_grpc.EmbeddingStub(self._emb_channel)
        self.gallery = gallery_pb2_grpc.GalleryStub(self._gal_channel)
        self._clients: dict[str, object] = {}
        self._keys_ok: dict[str, float] = {}
        self._lock = threading.Lock()
        self._gallery_cache: dict[tuple[str, int], object] = {}
        #: The caller's API key, per request thread: the services check it too (writes need a write key);
        #: without one, the stack's own read-only service token.
        self.caller = threading.local()

    # ------------------------------------------------------------------------------------------ the key
    def client(self, key: str):
        from iznet.client import GatewayClient

        with self._lock:
            c = self._clients.get(key)
            if c is None:
                c = self._clients[key] = GatewayClient(self.gateway_address, api_key=key or None,
                                                       timeout=self.timeout)
            return c

    def check_key(self, key: str) -> None:
        """Ask the gateway: an empty Label is refused UNAUTHENTICATED for a wrong key, else INVALID_ARGUMENT."""
        from iznet.client import GatewayError
        from iznet.v1 import common_pb2, gateway_pb2

        if self._keys_ok.get(key, 0.0) > time.monotonic():
            return
        c = self.client(key)
        try:
            c.stub.Label(gateway_pb2.LabelRequest(image=common_pb2.Image()), timeout=10, metadata=c.metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise ApiError("UNAUTHENTICATED", exc.details() or "wrong API key") from None
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise _rpc_error(exc) from None
        except GatewayError as exc:
            raise ApiError(exc.code, exc.details) from None
        self._keys_ok[key] = time.monotonic() + KEY_TTL_S

    def info(self, key: str) -> dict:
        try:
            self.check_key(key)
            key_ok = True
        except ApiError as exc:
            if exc.code != "UNAUTHENTICATED":
                raise
            key_ok = False
        return {"gateway": self.gateway_address, "default_gallery": self.default_gallery,
                "galleries": self.gallery_names(), "key_ok": key_ok, "max_upload": MAX_UPLOAD}

    # ------------------------------------------------------------------------------------------ label
    def label(self, key: str, photo: bytes, name: str, gallery: str = "", threshold: float | None = None) -> dict:
        from iznet.client import GatewayError

        t0 = time.perf_counter()
        try:
            result = self.client(key).label(photo, image_id=name, gallery=gallery, annotate=True,
                                            threshold=threshold)
        except GatewayError as exc:
            raise ApiError(exc.code, exc.details) from None
        doc = result.to_json()
        doc["web_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        doc["annotated"] = "data:image/jpeg;base64," + base64.b64encode(result.annotated).decode()
        return doc

    # ------------------------------------------------------------------------------------------ gallery
    def _call(self, method, request):
        from services.common import key_metadata, service_metadata

        key = getattr(self.caller, "key", "")
        try:
            return method(request, timeout=self.timeout, metadata=key_metadata(key) or service_metadata())
        except grpc.RpcError as exc:
            raise _rpc_error(exc) from None

    def gallery_names(self) -> list[str]:
        from iznet.gallery import GalleryStore

        try:
            return GalleryStore(self.store).names()
        except Exception:  # noqa: BLE001 - a listing is a courtesy; the services answer the rest
            return [self.default_gallery]

    @staticmethod
    def _version(v) -> dict:
        from iznet.wire import gallery_version_from_pb

        return dict(gallery_version_from_pb(v) or {})

    def people(self, gallery: str) -> dict:
        from iznet.v1 import gallery_pb2

        r = self._call(self.gallery.ListPeople, gallery_pb2.ListPeopleRequest(gallery=gallery))
        people = sorted(({"id": p.id, "name": p.name, "exemplars": p.exemplars} for p in r.people),
                        key=lambda p: p["name"].lower())
        return {"people": people, "version": self._version(r.version)}

    def _stored(self, gallery: str, version: int):
        """A gallery version from the store (read-only, cached): thumbnails and history have no gRPC call."""
        from iznet.gallery import GalleryStore

        with self._lock:
            g = self._gallery_cache.get((gallery, version))
        if g is None:
            try:
                g = GalleryStore(self.store).load(gallery, version)
            except Exception as exc:  # noqa: BLE001
                raise ApiError(getattr(exc, "grpc_code", "NOT_FOUND"), str(exc)) from None
            with self._lock:
                if len(self._gallery_cache) > 8:
                    self._gallery_cache.clear()
                self._gallery_cache[(gallery, version)] = g
        return g

    def exemplars(self, gallery: str, person: str, limit: int = 6) -> dict:
        """The person's exemplar crops as JPEG data URLs, from the version the gallery service serves."""
        from iznet.imageio import encode_image
        from iznet.v1 import gallery_pb2

        v = self._call(self.gallery.GetVersion, gallery_pb2.GetVersionRequest(gallery=gallery))
        g = self._stored(v.name, int(v.version))
        try:
            p = g.person(person)
        except Exception as exc:  # noqa: BLE001
            raise ApiError("NOT_FOUND", str(exc)) from None
        out = []
        for e in g.exemplars_of(p.id)[:limit]:
            crop = g.crop(e.id)
            if crop is not None:
                out.append({"id": e.id, "source": Path(e.source or "").name,
                            "src": "data:image/jpeg;base64," + base64.b64encode(encode_image(crop, ".jpg", 85)).decode()})
        return {"person": p.name, "exemplars": out, "total": len(g.exemplars_of(p.id)), "version": int(v.version)}

    def rename(self, gallery: str, person: str, new_name: str) -> dict:
        from iznet.v1 import gallery_pb2

        p = self._call(self.gallery.RenamePerson, gallery_pb2.RenamePersonRequest(
            gallery=gallery, person=person, new_name=new_name))
        return {"person": {"id": p.id, "name": p.name, "exemplars": p.exemplars}}

    def remove(self, gallery: str, person: str) -> dict:
        from iznet.v1 import gallery_pb2

        r = self._call(self.gallery.RemovePerson, gallery_pb2.RemovePersonRequest(gallery=gallery, person=person))
        return {"removed_exemplars": r.removed_exemplars, "version": self._version(r.version)}

    def enroll(self, key: str, gallery: str, person: str, photo: bytes, source: str) -> dict:
        """One photo of ``person``: enrolled, or rejected with the reason (the API's words)."""
        from iznet.client import GatewayError
        from iznet.data.align import choose_face
        from iznet.v1 import common_pb2, embedding_pb2, gallery_pb2

        if not person.strip():
            raise ApiError("INVALID_ARGUMENT", "a person's name is needed to enroll a photo")
        out = {"source": source, "person": person}
        try:
            r = self.client(key).label(photo, image_id=source, gallery=gallery, return_crops=True)
        except GatewayError as exc:
            if exc.code != "INVALID_ARGUMENT":
                raise ApiError(exc.code, exc.details) from None
            return {**out, "status": "rejected", "reason": "unreadable", "detail": exc.details}
        faces = [f for f in r.faces if f.crop]
        if not faces:
            detail = (f"only faces too small to recognise were found ({r.faces[0].note})" if r.faces else
                      f"the {r.detector.name or 'served'} detector found no face")
            return {**out, "status": "rejected", "reason": "face_too_small" if r.faces else "no_face",
                    "detail": detail}
        choice = choose_face([f.box for f in faces], r.width, r.height)
        face = faces[choice.index]
        note = "" if len(faces) == 1 else f"several faces ({len(faces)}): took the largest and most central" + (
            " (ambiguous: another face was nearly as large and central)" if choice.ambiguous else "")
        version = self._call(self.gallery.GetVersion, gallery_pb2.GetVersionRequest(gallery=gallery))
        emb = self._call(self.embedding.Embed, embedding_pb2.EmbedRequest(
            crops=[common_pb2.Image(data=face.crop, id=source)], model_digest=version.model.digest))
        e = self._call(self.gallery.Enroll, gallery_pb2.EnrollRequest(
            gallery=gallery, person=person, model_digest=emb.model.digest,
            exemplars=[gallery_pb2.Exemplar(crop=face.crop, vector=emb.vectors[0], source=source)]))
        if e.rejected:
            return {**out, "status": "rejected", "reason": "refused", "detail": "; ".join(e.rejected)}
        return {**out, "status": "enrolled", "note": note, "person": e.person.name, "exemplars": e.person.exemplars,
                "version": self._version(e.version)}

    def versions(self, gallery: str) -> dict:
        from iznet.v1 import gallery_pb2

        v = self._call(self.gallery.GetVersion, gallery_pb2.GetVersionRequest(gallery=gallery))
        g = self._stored(v.name, int(v.version))
        info = g.info()
        return {"served": self._version(v), "history": list(reversed(g.history)),
                "rule": info.get("rule"), "detector": info.get("detector"), "keep_crops": info.get("keep_crops"),
                "threshold": info.get("threshold")}

    # ------------------------------------------------------------------------------------------ models, jobs
    def models(self) -> dict:
        from iznet.registry import list_models

        return {"models": list_models(self.store)}

    def jobs(self, limit: int = 50) -> dict:
        """Job records in the store (newest first), with live progress when Redis answers."""
        rows = []
        folder = self.store / "jobs"
        files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
        for f in files[:limit]:
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            rows.append({"id": rec.get("id", f.stem), "kind": rec.get("kind"), "state": rec.get("state"),
                         "submitted_at": rec.get("submitted_at"), "started_at": rec.get("started_at"),
                         "finished_at": rec.get("finished_at"), "attempts": len(rec.get("attempts") or []),
                         "outputs": rec.get("outputs") or {}, "metrics": rec.get("metrics") or {},
                         "error": rec.get("error"), "params": {k: v for k, v in (rec.get("params") or {}).items()
                                                               if k != "store"}})
        live = self._live_progress()
        for row in rows:
            if row["id"] in live:
                row["progress"] = live[row["id"]].get("progress")
                row["state"] = live[row["id"]].get("state") or row["state"]
        return {"jobs": rows, "live": bool(live), "folder": str(folder)}

    def _live_progress(self) -> dict:
        import os

        if not os.environ.get("IZNET_REDIS_URL"):
            return {}
        try:
            from training.jobs.client import Jobs

            return {s["id"]: s for s in Jobs(os.environ["IZNET_REDIS_URL"], self.store).list(50)}
        except Exception:  # noqa: BLE001 - no Redis: the records still say what happened
            return {}

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._emb_channel.close()
        self._gal_channel.close()


class Handler(BaseHTTPRequestHandler):
    backend: WebBackend
    server_version = "iznet-web"

    def log_message(self, fmt, *args):  # to the log, not stderr noise per request
        log.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                                   "frame-ancestors 'none'")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc) -> None:
        self._send(status, json.dumps(doc, default=str).encode(), "application/json")

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_UPLOAD:
            self.close_connection = True  # the body is not read
            raise ApiError("INVALID_ARGUMENT", f"image too large: {n:,} bytes > limit {MAX_UPLOAD:,}")
        return self.rfile.read(n) if n else b""

    def _static(self, path: str) -> None:
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        f = (STATIC / name).resolve()
        if STATIC.resolve() not in f.parents or not f.is_file():
            self._json(404, {"code": "NOT_FOUND", "error": f"no page {path}"})
            return
        ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(200, f.read_bytes(), ctype)

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if method == "GET" and not url.path.startswith("/api/"):
            return self._static(url.path)
        b, key = self.backend, self.headers.get("X-Api-Key", "")
        b.caller.key = key
        gallery = q.get("gallery", "")
        try:
            if url.path == "/api/info" and method == "GET":
                return self._json(200, b.info(key))
            b.check_key(key)
            if method == "GET":
                routes = {"/api/people": lambda: b.people(gallery),
                          "/api/exemplars": lambda: b.exemplars(gallery, q.get("person", "")),
                          "/api/versions": lambda: b.versions(gallery),
                          "/api/models": b.models, "/api/jobs": b.jobs}
                if url.path in routes:
                    return self._json(200, routes[url.path]())
            elif url.path == "/api/label":
                threshold = float(q["threshold"]) if q.get("threshold") else None
                return self._json(200, b.label(key, self._body(), q.get("name", "photo"), gallery, threshold))
            elif url.path == "/api/enroll":
                return self._json(200, b.enroll(key, gallery, q.get("person", ""), self._body(),
                                                q.get("name", "photo")))
            elif url.path in ("/api/rename", "/api/remove"):
                try:
                    doc = json.loads(self._body() or b"{}")
                except ValueError:
                    raise ApiError("INVALID_ARGUMENT", "the request body is not JSON") from None
                if url.path == "/api/rename":
                    return self._json(200, b.rename(gallery, doc.get("person", ""), doc.get("new_name", "")))
                return self._json(200, b.remove(gallery, doc.get("person", "")))
            self._json(404, {"code": "NOT_FOUND", "error": f"no {method} {url.path}"})
        except ApiError as exc:
            self._json(exc.status, {"code": exc.code, "error": exc.reason})
        except ValueError as exc:
            self._json(400, {"code": "INVALID_ARGUMENT", "error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - the page gets a reason, the log the traceback
            log.exception("%s %s", method, url.path)
            self._json(500, {"code": "INTERNAL", "error": f"{type(exc).__name__}: {exc}"})

    def do_GET(self):  # noqa: N802
        self._route("GET")

    def do_POST(self):  # noqa: N802
        self._route("POST")


def make_server(backend: WebBackend, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"backend": backend})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def start_web(stack, port: int = 0, timeout: float = 60.0):
    """Start the web page beside a started :class:`services.stack.Stack` (a ``Proc`` named ``web``, added to
    ``stack.procs`` so ``stack.addresses()`` lists it; stop it with ``proc.stop()``)."""
    from services.stack import Proc

    a = stack.addresses()
    args = ["-m", "services.web", "--gateway", a["gateway"]["address"], "--embedding", a["embedding"]["address"],
            "--gallery", a["gallery"]["address"], "--store", str(stack.cfg.store),
            "--default-gallery", stack.cfg.gallery, "--host", stack.cfg.host, "--port", str(port)]
    proc = Proc("web", args, stack.log_dir / "web.log").start(stack.env, timeout)
    stack.procs["web"] = proc
    return proc


@click.command()
@click.option("--gateway", required=True, help="The gateway's gRPC address, HOST:PORT.")
@click.option("--embedding", required=True, help="The embedding service's gRPC address (enrollment).")
@click.option("--gallery", required=True, help="The gallery service's gRPC address.")
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="Artifact store, read-only here: thumbnails, version history, model cards, job records "
                   "(default: $IZNET_STORE or ~/.iznet).")
@click.option("--default-gallery", default="default", show_default=True, help="Gallery the page opens.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=0, type=int, show_default=True, help="Port; 0 picks a free one.")
def main(gateway, embedding, gallery, store, default_gallery, host, port):
    """The IZ*Net web page, beside a running gateway and gallery service."""
    from iznet.config import load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s web %(levelname)s %(message)s", stream=sys.stderr)
    backend = WebBackend(gateway, embedding, gallery, load_settings(store=store).store, default_gallery)
    server = make_server(backend, host, port)
    stopping = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stopping.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    h, p = server.server_address[:2]
    print("READY " + json.dumps({"service": "web", "address": f"{h}:{p}", "port": p, "url": f"http://{h}:{p}/"}),
          flush=True)
    stopping.wait()
    server.shutdown()
    backend.close()


if __name__ == "__main__":
    main()
