"""``python -m descend.cli`` (the same as the ``descend`` script)."""

from descend.cli import main

main()
