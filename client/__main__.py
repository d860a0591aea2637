"""``python -m client``: the same as the ``pinhole`` command."""

import sys

from client.cli import main

sys.exit(main())
