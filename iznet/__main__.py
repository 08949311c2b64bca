import sys

from iznet.cli import main

sys.exit(main())
