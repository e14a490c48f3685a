"""`python -m prefect_runway.emulator --port 8765 ...`"""

import sys

from .server import main

sys.exit(main())
