"""`python -m telemd.collector` runs `telemd-collector`."""

import sys

from telemd.collector.cli import main

sys.exit(main())
