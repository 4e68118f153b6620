"""`custody staff <command> ...`: send a staff command over MQTT and print the answer.

Options are made from protocol/staff.py's schemas: `--detainee d1 --band 0a0b0c0d0e ...`;
list arguments are comma-separated (`--officers o1,o2`, `--items "phone,keys"`).
The tool logs in to the broker as the staff account `--user` (password from
`--password-file` or a prompt, never the command line), over TLS with the site CA
(`--ca-file`) when given, and publishes on `request/<user>/<command>`.
"""

import argparse
import getpass
import json
import sys
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from protocol.config import ConfigError
from protocol.site import DEMO_SITE, load_site
from protocol.staff import COMMANDS, request_payload
from protocol.topics import Topics
from protocol.transport import LinkConf, make_client


def add_staff_login(p: argparse.ArgumentParser) -> None:
    """--user, --password-file, --ca-file, --host, --port (no password on the command line)."""
    p.add_argument("--user", required=True, help="your staff account (the broker login)")
    p.add_argument("--password-file", help="file holding your password (else a prompt)")
    p.add_argument("--ca-file", default="",
                   help="site CA (provisioned ca.crt): connect with TLS to the site listener")
    p.add_argument("--host")
    p.add_argument("--port", type=int)


def staff_link(args: argparse.Namespace, host: str, port: int, keepalive_s: int = 5
               ) -> LinkConf:
    """The LinkConf for a staff tool: the account's login, its password, TLS if a CA."""
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.read().strip()
        except OSError as e:
            raise ConfigError(args.password_file, "--password-file",
                              f"a readable file ({e.strerror})") from None
    else:
        password = getpass.getpass(f"password for {args.user}: ")
    return LinkConf(host=args.host or host, port=args.port or port, username=args.user,
                    password=password, ca_file=args.ca_file or None, keepalive_s=keepalive_s)


def send(topics: Topics, link: LinkConf, command: str, user: str, args: dict[str, Any],
         timeout: float = 10.0) -> dict[str, Any]:
    """Send one request and wait for its response (raises TimeoutError)."""
    txn = uuid.uuid4().hex[:16]
    got: dict[str, Any] = {}
    done = threading.Event()
    client = make_client(f"custody-staff-{txn}", link)

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            got["login_refused"] = str(reason)
            done.set()
            return
        c.subscribe(topics.response(user, command), qos=1)

    def on_subscribe(c: mqtt.Client, *_: Any) -> None:
        c.publish(topics.request(user, command), request_payload(txn, None, args), qos=1)

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("txn") == txn:
            got.update(data)
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(link.host, link.port, link.keepalive_s)
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise TimeoutError(f"no response to {command} within {timeout:.0f} s "
                               "(is the supervisor running?)")
    finally:
        client.disconnect()
        client.loop_stop()
    if "login_refused" in got:
        raise PermissionError(f"the broker refused login {user!r}: {got['login_refused']}")
    return got


def _convert(kind: str, text: str) -> Any:
    if kind == "int":
        return int(text)
    if kind in ("ids", "strs"):
        return [x.strip() for x in text.split(",") if x.strip()]
    if kind == "bool":
        if text.lower() in ("true", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        raise ValueError(f"{text!r} is not true or false")
    return text


def _run(args: argparse.Namespace) -> int:
    site = load_site(args.config)
    link = staff_link(args, site.broker.host, site.broker.port)
    schema = COMMANDS[args.staff_command]
    cmd_args: dict[str, Any] = {}
    for key, (kind, _required) in schema.items():
        value = getattr(args, f"arg_{key}")
        if value is not None:
            try:
                cmd_args[key] = _convert(kind, value)
            except ValueError as e:
                print(f"staff: --{key.replace('_', '-')}: {e}", file=sys.stderr)
                return 2
    try:
        resp = send(Topics(site.id, site.topic_prefix), link, args.staff_command, args.user,
                    cmd_args, args.timeout)
    except (TimeoutError, OSError, PermissionError) as e:
        print(f"staff: {e}", file=sys.stderr)
        return 1
    if resp.get("ok"):
        print(json.dumps(resp.get("result", {}), sort_keys=True))
        return 0
    print(f"staff: {args.staff_command} refused: {resp.get('error')}", file=sys.stderr)
    return 1


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody staff <command>`."""
    p = sub.add_parser("staff", help="send a staff command to the supervisor")
    s = p.add_subparsers(dest="staff_command", metavar="COMMAND", required=True)
    for command, schema in COMMANDS.items():
        c = s.add_parser(command, help=f"{command} ({', '.join(schema)})")
        c.add_argument("--config", default=str(DEMO_SITE), help="site file")
        add_staff_login(c)
        # view-evidence answers once the clip has come from the node and been checked
        c.add_argument("--timeout", type=float,
                       default=120.0 if command == "view-evidence" else 10.0)
        for key, (kind, required) in schema.items():
            c.add_argument(f"--{key.replace('_', '-')}", dest=f"arg_{key}", required=required,
                           help=kind + (" (comma-separated)" if kind in ("ids", "strs") else ""))
        c.set_defaults(func=_run)
