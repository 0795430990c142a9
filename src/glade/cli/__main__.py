"""``python -m glade.cli``: the same as the ``glade`` command."""

from glade.cli.main import main

main()
