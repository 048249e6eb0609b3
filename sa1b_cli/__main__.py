"""Allow ``python -m sa1b_cli``."""

from sa1b_cli.cli import main

main()
