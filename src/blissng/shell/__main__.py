"""``python -m blissng.shell SESSION``: the same as ``blissng shell SESSION``."""

import sys

from .cli import main

sys.exit(main())
