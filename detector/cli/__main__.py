"""``python -m detector.cli``: the ``whaled`` command."""

from detector.cli.main import main

main()
