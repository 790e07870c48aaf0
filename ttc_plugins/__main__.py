"""``python -m ttc_plugins`` runs the ``ttc`` command line."""

import sys

from .cli import main

sys.exit(main())
