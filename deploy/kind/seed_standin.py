"""Seed an empty artifact store for a demo cluster (run inside a pod that mounts the store):

    kubectl exec -i deploy/iznet-worker-cpu -- python - < deploy/kind/seed_standin.py

Publishes the default embedder (dlib's ResNet, imported; its weights are in the image) as models/<SEED_MODEL>
and enrolls a few generated people into galleries/<SEED_GALLERY> with the default models (MTCNN + dlib's
ResNet), unless they exist, so the services can start; prints what it did. Generated cartoons only prove the
path: enroll real people (`iznet gallery enroll`, or a job) to see them named.
"""

import os
import tempfile
from pathlib import Path

from iznet.config import load_settings
from iznet.gallery import GalleryStore
from iznet.gallery.embedders import model_record
from iznet.pipeline import Pipeline
from iznet.registry import create_detector, create_embedder, detector_spec
from iznet.serving import publish_model
from iznet.store import ArtifactStore
from iznet.synthetic import make_people

MODEL, GALLERY = os.environ.get("SEED_MODEL", "dlib-resnet"), os.environ.get("SEED_GALLERY", "default")
PEOPLE, PHOTOS, ENROLLED, SEED = 4, 12, 8, 0  # deploy-local.sh labels photo ENROLLED of person 0 (held out)

store = ArtifactStore(load_settings().store)
if MODEL not in store.names("models"):
    print(f"published models/{MODEL} v{publish_model(store, MODEL, 'default')}")
if GALLERY not in store.names("galleries"):
    with tempfile.TemporaryDirectory() as tmp:
        make_people(Path(tmp) / "photos", people=PEOPLE, photos=PHOTOS, seed=SEED)
        enroll = Path(tmp) / "enroll"
        for person in sorted((Path(tmp) / "photos").iterdir()):
            (enroll / person.name).mkdir(parents=True)
            for f in sorted(person.iterdir())[:ENROLLED]:
                (enroll / person.name / f.name).symlink_to(f)
        gs = GalleryStore(store)
        embedder = create_embedder(f"models/{MODEL}", store=store.root)
        g = gs.create(GALLERY, model_record(embedder, f"models/{MODEL}"), detector=detector_spec("default"))
        g.set_threshold(embedder.calibration)
        Pipeline(create_detector("default"), embedder, g).enroll_folder(enroll)
        gs.save(g, action="enroll")
    print(f"enrolled {PEOPLE} generated people into galleries/{GALLERY}")
print(f"store {store.root}: models {store.names('models')}, galleries {store.names('galleries')}")
