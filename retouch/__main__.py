"""``python -m retouch`` runs the command line."""

from retouch.cli import main

main()
