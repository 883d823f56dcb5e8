"""`python -m rnnflow` (and `torchrun -m rnnflow`) run the command line."""

import sys

from rnnflow.cli import main

sys.exit(main())
