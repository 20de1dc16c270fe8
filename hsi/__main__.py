"""``python -m hsi`` runs the command line."""

import sys

from hsi.cli import main

sys.exit(main())
