"""``python -m h5live``: the ``h5live`` command."""

import sys

from h5live._cli import main

sys.exit(main())
