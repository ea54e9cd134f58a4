"""`taskrunners migrate`: a codemod that ports Prefect code to taskrunners.

Needs libcst (`pip install "taskrunners[migrate]"`); nothing else in taskrunners
imports this package. `_table` holds what is ported, `_codemod` does it, `_command` is
the command line.
"""

from ._codemod import Migration, Note, migrate_source
from ._command import run

__all__ = ["Migration", "Note", "migrate_source", "run"]
