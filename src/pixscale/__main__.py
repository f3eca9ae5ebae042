"""Allow ``python -m pixscale``."""

from pixscale.cli import main

main()
