"""``python -m hsi.pretrained``: see :mod:`hsi.pretrained.cli`."""

import sys

from hsi.pretrained.cli import main

sys.exit(main())
