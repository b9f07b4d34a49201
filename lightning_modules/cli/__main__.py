"""`python -m lightning_modules.cli ...` runs the `lipmem` entry point."""

import sys

from lightning_modules.cli.main import main

sys.exit(main())
