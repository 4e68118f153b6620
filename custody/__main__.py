"""`python -m custody` is the `custody` command."""

import sys

from .cli import main

sys.exit(main())
