"""`custody site check FILE`: validate a site file and summarise it."""

import argparse

from protocol.site import DEMO_SITE, load_site


def _check(args: argparse.Namespace) -> int:
    site = load_site(args.file)
    kinds = sorted({r.kind for r in site.rooms})
    print(f"{args.file}: site {site.id!r}: {len(site.rooms)} rooms ({', '.join(kinds)}), "
          f"{len(site.doors)} doors, {len(site.nodes)} nodes: OK")
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody site`."""
    p = sub.add_parser("site", help="check a site description file")
    s = p.add_subparsers(dest="site_command", metavar="ACTION", required=True)
    c = s.add_parser("check", help="validate a site file (exit 2 with the bad key on error)")
    c.add_argument("file", nargs="?", default=str(DEMO_SITE))
    c.set_defaults(func=_check)
