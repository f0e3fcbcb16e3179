"""The `srsim` command: one subcommand per stage, each in its own module of this package.

A subcommand module defines `COMMAND`, `HELP`, `add_arguments(parser)` and `run(args)`; modules are
discovered at start-up, so adding a stage needs no change here. Heavy imports live inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from srsim import __version__
from srsim.errors import SrsimError


def _commands() -> dict:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "COMMAND"):
            found[module.COMMAND] = module
    return dict(sorted(found.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srsim", description="Super-resolution N-body simulations.")
    parser.add_argument("--version", action="version", version=f"srsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _commands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args._run(args)
    except SrsimError as exc:
        print(f"srsim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
