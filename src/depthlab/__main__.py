"""``python -m depthlab``: the same as the ``depthlab`` command."""
import sys

from .lab.cli import main

sys.exit(main())
