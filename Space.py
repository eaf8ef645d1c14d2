"""The seed's entry point for space-based images (1 band): ``python Space.py --help``."""

from lexactum.seed_cli import main

if __name__ == "__main__":  # guarded: worker processes that prepare the data re-import this file
    raise SystemExit(main("space"))
