"""The `custody` command: one entry point, sub-commands contributed by each part."""

import argparse
import importlib
import sys
from collections.abc import Sequence

from protocol.config import ConfigError

# Each module has `register(subparsers)`; order is the order of `custody --help`.
COMMAND_MODULES = (
    "custody.site_cmd",
    "custody.provision_cmd",
    "supervisor.accounts_cli",
    "custody.board_cmd",
    "edge_agent.cli",
    "edge_agent.vision.cli",
    "sim.cli",
    "sim.demo",
    "sim.region",
    "supervisor.cli",
    "supervisor.staff_cli",
    "supervisor.watch",
    "supervisor.report",
    "supervisor.uplink",
    "bureau.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every part's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="custody",
        description="custody-edge: room nodes, supervisor, simulator and tools for a custody area.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command; config errors are one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"custody: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
