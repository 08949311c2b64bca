from services.common import run
from services.detection.server import main

run(main)
