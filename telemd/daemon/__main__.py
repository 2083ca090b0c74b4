"""`python -m telemd.daemon` runs the daemon, as the `telemd` command does."""

import sys

from telemd.daemon.main import main

sys.exit(main())
