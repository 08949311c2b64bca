"""Seed an empty artifact store for a demo cluster (run inside a pod that mounts the store):

    kubectl exec -i deploy/iznet-worker-cpu -- python - < deploy/kind/seed_standin.py

Publishes the STAND-IN embedder as models/standin-pixels and enrolls a few generated people into
galleries/default, unless they exist, so the services can start. Uses the services' stand-ins (iznet.standin)
until trained models and the real gallery enrollment are published by jobs; prints what it did.
"""

import os
import tempfile
from pathlib import Path

from iznet.config import load_settings
from iznet.detection.teachers import make_teacher
from iznet.standin import enroll_folders, load_embedder_dir, publish_standin_model
from iznet.store import ArtifactStore
from iznet.synthetic import make_people

MODEL, GALLERY = os.environ.get("SEED_MODEL", "standin-pixels"), os.environ.get("SEED_GALLERY", "default")
PEOPLE, PHOTOS, ENROLLED, SEED = 4, 12, 8, 0  # deploy-local.sh labels photo ENROLLED of person 0 (held out)

store = ArtifactStore(load_settings().store)
if MODEL not in store.names("models"):
    print(f"published models/{MODEL} v{publish_standin_model(store, MODEL, seed=1)}")
if GALLERY not in store.names("galleries"):
    with tempfile.TemporaryDirectory() as tmp:
        make_people(Path(tmp) / "photos", people=PEOPLE, photos=PHOTOS, seed=SEED)
        enroll = Path(tmp) / "enroll"
        for person in sorted((Path(tmp) / "photos").iterdir()):
            (enroll / person.name).mkdir(parents=True)
            for f in sorted(person.iterdir())[:ENROLLED]:
                (enroll / person.name / f.name).symlink_to(f)
        embedder = load_embedder_dir(store.current("models", MODEL))
        enroll_folders(store, GALLERY, enroll, embedder, make_teacher("haar"))
    print(f"enrolled {PEOPLE} generated people into galleries/{GALLERY}")
print(f"store {store.root}: models {store.names('models')}, galleries {store.names('galleries')}")
