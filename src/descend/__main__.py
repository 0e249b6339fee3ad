"""``python -m descend``: the same command line as the ``descend`` script."""

from descend.cli import main

if __name__ == "__main__":
    main()
