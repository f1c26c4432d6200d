"""``python -m bridge``: the diagnostics CLI."""

from ._cli import main

raise SystemExit(main())
