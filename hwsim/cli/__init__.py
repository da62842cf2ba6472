"""The ``hwsim`` command line."""

from hwsim.cli.simulate import main

__all__ = ["main"]
