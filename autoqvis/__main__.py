"""``python -m autoqvis`` (and ``torchrun -m autoqvis``) runs the command line."""

from autoqvis.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
