"""``python -m producer.cli``: the ``fence`` command."""

from producer.cli.main import main

raise SystemExit(main())
