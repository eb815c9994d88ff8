"""``python -m app.cli``: the ``resviz`` command."""

import sys

from app.cli import main

sys.exit(main())
