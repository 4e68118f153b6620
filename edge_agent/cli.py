"""`custody agent --config FILE`: run a room node."""

import argparse
import logging
import sqlite3
import sys

from protocol.private import owner_only

from .config import load_agent_config


def _run(args: argparse.Namespace) -> int:
    conf = load_agent_config(args.config)
    owner_only()  # the outbox holds names and cases: readable by this user only
    logging.basicConfig(level=(args.log_level or conf.log_level).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .agent import run_agent

    try:
        return run_agent(conf)
    except (sqlite3.Error, OSError) as e:  # e.g. an outbox on a full or read-only card
        print(f"custody: agent {conf.node.id}: outbox {conf.outbox}: {e}", file=sys.stderr)
        return 1


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody agent`."""
    p = sub.add_parser("agent", help="run a room node (readers, doors, presence, local rules)")
    p.add_argument("--config", required=True, help="agent config file (TOML)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None)
    p.set_defaults(func=_run)
