"""``python -m sa1b_cli.testing.cdn``: see :mod:`sa1b_cli.testing.cdn.process`."""

import sys

from sa1b_cli.testing.cdn.process import main

sys.exit(main())
