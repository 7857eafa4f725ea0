"""`python -m search <command> [overrides]`."""

import sys

from search.cli import main

sys.exit(main())
