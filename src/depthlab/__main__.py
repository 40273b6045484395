"""``python -m depthlab``: the same as the ``depthlab`` command."""
import sys

try:
    from .lab.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing: stop as the command does
    sys.exit(130)

sys.exit(main())
