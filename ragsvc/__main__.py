"""`python -m ragsvc` runs the command line."""

import sys

from ragsvc.cli import main

sys.exit(main())
