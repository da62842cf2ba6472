"""The ``hwsim`` command line: one click group (:mod:`hwsim.cli.group`) and one module per
command, each registering itself on that group when imported here.

``hwsim = "hwsim.cli:main"`` is the console script; ``python -m hwsim.cli`` and
``python -m hwsim`` run the same group.
"""

from hwsim.cli import compare, listing, op, plan, plot, serve, simulate, sweep, validate  # noqa: F401  (register)
from hwsim.cli.group import main

__all__ = ["main"]
