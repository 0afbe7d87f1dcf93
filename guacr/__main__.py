"""``python -m guacr`` runs the daemon."""

from guacr.cli import main

main()
