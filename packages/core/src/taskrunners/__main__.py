"""`python -m taskrunners ...`: the same as the `taskrunners` command."""

from ._cli import main

raise SystemExit(main())
