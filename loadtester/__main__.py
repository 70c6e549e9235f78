"""``python -m loadtester``: the same as ``fledge loadtester``, without the CLI's argument pass-through.

It exists because the integration tests and container commands start the load tester as a module; it must
not hold any logic of its own (that is in ``cli``).
"""

import sys

from loadtester import cli

if __name__ == "__main__":
    sys.exit(cli.main())
