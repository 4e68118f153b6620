"""`custody alerts watch`: a live terminal view of active alerts and rooms for the desk."""

import argparse
import json
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from rich.console import Group
from rich.live import Live
from rich.table import Table

from protocol.site import DEMO_SITE, load_site
from protocol.topics import TopicError, Topics
from protocol.transport import make_client

from .staff_cli import add_staff_login, staff_link


def _hms(ms: Any) -> str:
    """Custody ms as UTC H:M:S; any value a message holds prints, none crashes."""
    try:
        return time.strftime("%H:%M:%S", time.gmtime(ms / 1000))
    except (OverflowError, OSError, ValueError, TypeError):
        return "??:??:??"


STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


class View:
    """What the watcher has received: the alerts snapshot, rooms, recent alert messages."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: list[dict[str, Any]] = []
        self.rooms: dict[str, dict[str, Any]] = {}
        self.recent: list[dict[str, Any]] = []
        self.login_error = ""

    def render(self) -> Group:
        """The tables to draw."""
        with self.lock:
            alerts = Table(title=f"Active alerts ({len(self.active)})", expand=True)
            for col in ("severity", "rule", "detainee", "room", "state", "raised", "message"):
                alerts.add_column(col)
            for a in sorted(self.active, key=lambda a: (-["info", "warning", "critical"]
                                                         .index(a["severity"]), a["raised_ts"])):
                alerts.add_row(a["severity"], a["rule"], a.get("detainee") or "",
                               a.get("room") or "", a["state"],
                               _hms(a["raised_ts"]),
                               a["message"], style=STYLE.get(a["severity"], ""))
            rooms = Table(title="Rooms", expand=True)
            for col in ("room", "kind", "detainees", "officers", "camera"):
                rooms.add_column(col)
            for r in sorted(self.rooms.values(), key=lambda r: r["room"]):
                if r["detainees"] or r["officers"] or r["unregistered"]:
                    rooms.add_row(r["room"], r["kind"], ", ".join(r["detainees"]),
                                  ", ".join(r["officers"]),
                                  "live" if r["camera_live"] else "NOT LIVE")
            recent = Table(title="Latest alert messages", expand=True)
            for col in ("time", "state", "rule", "message"):
                recent.add_column(col)
            for m in self.recent[-8:]:
                recent.add_row(_hms(m["ts"]),
                               m["state"], m["rule"], m["message"],
                               style=STYLE.get(m["severity"], ""))
        return Group(alerts, rooms, recent)

    def on_message(self, topics: Topics, topic: str, payload: bytes) -> None:
        """Take in one message."""
        try:
            parsed = topics.parse(topic)
            data = json.loads(payload)
        except (TopicError, ValueError):
            return
        with self.lock:
            if parsed.kind == "state" and parsed.channel == "alerts":
                self.active = data.get("active", [])
            elif parsed.kind == "state" and parsed.channel == "room":
                self.rooms[data["room"]] = data
            elif parsed.kind == "alert":
                self.recent.append(data)
                del self.recent[:-50]


def _run(args: argparse.Namespace) -> int:
    site = load_site(args.config)
    topics = Topics(site.id, site.topic_prefix)
    link = staff_link(args, site.broker.host, site.broker.port)
    view = View()
    client = make_client(f"custody-watch-{int(time.time() * 1000) % 10**9}", link)

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            view.login_error = f"the broker refused login {args.user!r}: {reason}"
            return
        c.subscribe([(topics.state("alerts"), 1), (f"{topics.base}/state/room/+", 1),
                     (topics.alert_filter(), 1)])

    client.on_connect = on_connect
    client.on_message = lambda c, u, m: view.on_message(topics, m.topic, bytes(m.payload))
    client.connect_async(link.host, link.port, link.keepalive_s)
    client.loop_start()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        with Live(view.render(), refresh_per_second=4, screen=False) as live:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.25)
                live.update(view.render())
                if view.login_error:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    if view.login_error:
        print(f"alerts watch: {view.login_error}", file=sys.stderr)
        return 1
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody alerts watch`."""
    p = sub.add_parser("alerts", help="follow the site's alerts")
    s = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    w = s.add_parser("watch", help="live view of active alerts and rooms")
    w.add_argument("--config", default=str(DEMO_SITE), help="site file")
    add_staff_login(w)
    w.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    w.set_defaults(func=_run)
