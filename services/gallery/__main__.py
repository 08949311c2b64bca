from services.common import run
from services.gallery.server import main

run(main)
