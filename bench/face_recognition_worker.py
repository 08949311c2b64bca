"""The peer's side of bench/peer_face_recognition.py: face_recognition's standard recipe, run by the peer
virtualenv's Python (face_recognition, dlib-bin, numpy, Pillow; nothing of IZ*Net is imported here).

JSON lines on stdin, one answer line each on stdout:

    {"op": "enroll", "people": {"Name": [path, ...]}, "mode": "all" | "mean"}
        -> {"enrolled": {"Name": n_photos}, "rejected": [[path, reason]], "ms": total}
    {"op": "label", "path": path, "tolerance": 0.6}
        -> {"faces": [{"box": [x1, y1, x2, y2], "name": "Name" | null, "distance": d}], "ms": ms}
    {"op": "quit"}

The recipe (face_recognition's README and examples): ``face_locations`` (HOG, one upsampling) and
``face_encodings`` (the 5-point landmarks, one jitter); an enrollment photo gives the encoding of its largest
face; a face is named after the enrolled person nearest by Euclidean distance when that distance is at most
``tolerance`` (0.6, ``compare_faces``' default), else it is unknown. ``mode`` "all" compares with every
enrolled encoding, "mean" with each person's mean encoding. ``ms`` is measured here, around decoding, locating,
encoding and naming one photo (not the pipe).
"""

import json
import sys
import time


def main() -> None:
    import dlib
    import face_recognition
    import numpy as np

    names: list = []
    vecs = np.zeros((0, 128))
    print(json.dumps({"ready": True, "dlib": dlib.__version__, "blas": bool(getattr(dlib, "DLIB_USE_BLAS", False)),
                      "face_recognition": getattr(face_recognition, "__version__", "")}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        if req["op"] == "enroll":
            t0 = time.perf_counter()
            per_person: dict = {}
            rejected = []
            for person, paths in req["people"].items():
                for path in paths:
                    img = face_recognition.load_image_file(path)
                    boxes = face_recognition.face_locations(img)
                    if not boxes:
                        rejected.append([path, "no_face"])
                        continue
                    big = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
                    per_person.setdefault(person, []).append(face_recognition.face_encodings(img, [big])[0])
            names, rows = [], []
            for person, encs in per_person.items():
                if req.get("mode", "all") == "mean":
                    names.append(person)
                    rows.append(np.mean(encs, axis=0))
                else:
                    names += [person] * len(encs)
                    rows += encs
            vecs = np.asarray(rows).reshape(-1, 128)
            print(json.dumps({"enrolled": {p: len(e) for p, e in per_person.items()}, "rejected": rejected,
                              "ms": (time.perf_counter() - t0) * 1000}), flush=True)
        elif req["op"] == "label":
            tol = float(req.get("tolerance", 0.6))
            t0 = time.perf_counter()
            img = face_recognition.load_image_file(req["path"])
            boxes = face_recognition.face_locations(img)
            encs = face_recognition.face_encodings(img, boxes)
            faces = []
            for (top, right, bottom, left), enc in zip(boxes, encs):
                name, dist = None, None
                if len(vecs):
                    d = face_recognition.face_distance(vecs, enc)
                    k = int(np.argmin(d))
                    dist = float(d[k])
                    name = names[k] if dist <= tol else None
                faces.append({"box": [left, top, right, bottom], "name": name, "distance": dist})
            ms = (time.perf_counter() - t0) * 1000
            print(json.dumps({"faces": faces, "ms": ms}), flush=True)
        else:
            print(json.dumps({"error": f"unknown op {req['op']!r}"}), flush=True)


if __name__ == "__main__":
    main()
