"""``python -m granite_assets`` runs the command line."""

import sys

from granite_assets._cli import main

sys.exit(main())
