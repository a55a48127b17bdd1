"""`python -m app.cli`: what `slipway up` starts its API and worker processes with."""

import sys

from app.cli import main

sys.exit(main())
