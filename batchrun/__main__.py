"""`python -m batchrun`."""

import sys

from batchrun.cli import main

sys.exit(main())
