"""`custody agent --config FILE`: run a room node."""

import argparse
import logging

from .config import load_agent_config


def _run(args: argparse.Namespace) -> int:
    conf = load_agent_config(args.config)
    logging.basicConfig(level=(args.log_level or conf.log_level).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .agent import run_agent

    return run_agent(conf)


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody agent`."""
    p = sub.add_parser("agent", help="run a room node (readers, doors, presence, local rules)")
    p.add_argument("--config", required=True, help="agent config file (TOML)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None)
    p.set_defaults(func=_run)
