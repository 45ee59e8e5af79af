"""``python -m blissng``: the same as the ``blissng`` command."""

from blissng.cli import main

raise SystemExit(main())
