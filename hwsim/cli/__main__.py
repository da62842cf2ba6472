"""``python -m hwsim.cli``: the same command line as ``hwsim``."""

from hwsim.cli import main

if __name__ == "__main__":
    main(prog_name="hwsim")
