"""``python -m canary.cli``: the ``fledge`` command run from a checkout (``./dev``, localkube's controller)."""

import sys

from canary.cli import command

sys.exit(command.main())
