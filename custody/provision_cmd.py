"""`custody provision`: site CA, broker config, per-node credentials; `--revoke NODE`."""

import argparse
import sys

from custody.provisioning import Options, ProvisionError, provision, reinstate, revoke


def _run(args: argparse.Namespace) -> int:
    try:
        if args.revoke:
            revoke(args.out, args.revoke)
            print(f"{args.out}: node {args.revoke!r} revoked: broker password and HMAC key "
                  "removed. Install broker/passwords, broker/acl and supervisor/keys.toml, then "
                  "reload Mosquitto (systemctl reload mosquitto) and restart the supervisor.")
            return 0
        if args.reinstate:
            reinstate(args.out, args.reinstate)
            print(f"{args.out}: node {args.reinstate!r} will get new credentials on the next run")
            return 0
        if not args.site:
            print("custody provision: --site FILE is required", file=sys.stderr)
            return 2
        wifi_password = "CHANGE-ME"
        if args.wifi_password_file:
            try:
                with open(args.wifi_password_file, encoding="utf-8") as f:
                    wifi_password = f.read().strip()
            except OSError as e:
                raise ProvisionError(f"{args.wifi_password_file}: cannot read the Wi-Fi "
                                     f"password ({e.strerror})") from None
        opts = Options(hosts=args.host or [], tls_port=args.tls_port, bind=args.bind,
                       local_port=args.local_port, broker_dir=args.broker_dir,
                       data_dir=args.data_dir, log_file=args.log_file,
                       wifi_ssid=args.wifi_ssid, wifi_password=wifi_password)
        report = provision(args.site, args.out, opts)
    except ProvisionError as e:
        print(f"custody provision: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(report.added)} nodes added, {len(report.kept)} kept"
          + (f", revoked and skipped: {', '.join(report.skipped_revoked)}"
             if report.skipped_revoked else ""))
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody provision`."""
    p = sub.add_parser("provision", help="create or extend a site's credentials and broker config")
    p.add_argument("--site", help="site file (TOML)")
    p.add_argument("--out", required=True, help="output directory (secret; re-run to extend)")
    p.add_argument("--revoke", metavar="NODE", help="revoke one node's credentials")
    p.add_argument("--reinstate", metavar="NODE", help="allow a revoked node to be provisioned")
    p.add_argument("--host", action="append",
                   help="broker host name/address for its certificate (repeatable; first is "
                        "what nodes connect to; default: the site file's broker host)")
    p.add_argument("--tls-port", type=int, default=8883)
    p.add_argument("--bind", default="", help="TLS listener address (default: all)")
    p.add_argument("--local-port", type=int, default=1883,
                   help="plain loopback listener for the supervisor (0: none)")
    p.add_argument("--broker-dir", default="/etc/mosquitto/custody",
                   help="where broker/ will be installed (paths in mosquitto.conf)")
    p.add_argument("--data-dir", default="/var/lib/mosquitto")
    p.add_argument("--log-file", default="", help="Mosquitto log file (default: syslog)")
    p.add_argument("--wifi-ssid", default="CHANGE-ME")
    # A file, never the command line (`ps` shows every process's arguments).
    p.add_argument("--wifi-password-file", help="file holding the sensor boards' Wi-Fi password")
    p.set_defaults(func=_run)
