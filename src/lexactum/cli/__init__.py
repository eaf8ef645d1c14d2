"""The ``lexactum`` command: argument parsing only.

Each subcommand lives in its own module under ``lexactum.cli`` with two functions:
``add_parser(subparsers)`` registers its arguments (importing nothing heavy) and the function it sets as
``func`` does the work, importing torch, lightning, matplotlib... only when it runs. This keeps
``lexactum --help`` instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lexactum import __version__
from lexactum.errors import run_reporting_errors

#: Subcommand modules, in the order ``lexactum --help`` lists them.
COMMAND_MODULES = (
    "demo",
    "simulate",
    "dataset",
    "augment",
    "train",
    "evaluate",
    "predict",
    "grades",
    "features",
    "models",
    "convert",
    "inspect",
    "explain",
    "transfer_check",
)


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in epilogs as written and shows defaults (but not empty ones)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lexactum",
        description="Find strong gravitational lenses in survey cutouts with CNNs (Lens Finding Challenge 1.0).",
        formatter_class=_Formatter,
        epilog="Run 'lexactum COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"lexactum {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"lexactum.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not written yet must not break the others
            if exc.name != f"lexactum.cli.{name}":
                raise
            continue
        module.add_parser(sub, _Formatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the subcommand
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = debug
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return run_reporting_errors(f"lexactum {args.command}", lambda: args.func(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
