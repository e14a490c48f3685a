"""``python -m prefect_runway.cli``: the ``prefect-runway`` command."""

import sys

from prefect_runway.cli import main

sys.exit(main())
