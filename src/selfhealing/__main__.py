"""``python -m selfhealing`` runs the ``selfheal`` command line."""

from selfhealing.cli import main


main()
