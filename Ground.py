"""The seed's entry point for ground-based images (4 bands): ``python Ground.py --help``."""

from lexactum.seed_cli import main

if __name__ == "__main__":  # guarded: worker processes that prepare the data re-import this file
    raise SystemExit(main("ground"))
