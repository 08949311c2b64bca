from services.common import run
from services.embedding.server import main

run(main)
