"""HTML for the desk: the page around a view, and each view rendered from a snapshot.

Pure functions of (snapshot, context): the server renders a view once for the page and again
for every live update, so what a reload shows and what the socket pushes are the same markup.
"""

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from protocol.staff import DISPOSITIONS

from .i18n import LANGS, fmt_dur, fmt_time, meaning, t
from .snapshot import STEPS

VIEWS = ("floor", "alerts", "detainees", "record", "approvals", "inspection")
SEV_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Ctx:
    """Who is looking, in which language and zone, and what they may do."""

    lang: str
    tz: ZoneInfo
    user: str
    name: str
    csrf: str
    can: Callable[[str], bool]


@dataclass(frozen=True)
class View:
    """A view's markup: a shell, and keyed lists (alert rows, room tiles, detainee rows) that
    a live stream patches item by item instead of sending the whole view again.

    Each list's container carries `data-list=NAME` and only its items, each `data-key=KEY`;
    the shell holds slot(NAME) where the items go.
    """

    shell: str
    lists: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def html(self) -> str:
        """The whole fragment."""
        out = self.shell
        for name, items in self.lists.items():
            out = out.replace(slot(name), "".join(h for _k, h in items))
        return out


def slot(name: str) -> str:
    """Where a list's items go in a View's shell (never in escaped text: NUL is not)."""
    return f"\x00{name}\x00"


def e(x: Any) -> str:
    """Escape for HTML text and attributes."""
    return html.escape("" if x is None else str(x), quote=True)


def _who(snap: dict[str, Any], pid: str | None) -> str:
    if not pid:
        return "-"
    name = snap["names"].get(pid)
    return e(f"{name} ({pid})" if name and name != pid else pid)


def _form(ctx: Ctx, command: str, hidden: dict[str, str], fields: str, button: str,
          cls: str = "") -> str:
    inputs = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">'
                     for k, v in hidden.items())
    return (f'<form class="act {cls}" method="post" action="/action">'
            f'<input type="hidden" name="csrf" value="{e(ctx.csrf)}">'
            f'<input type="hidden" name="command" value="{e(command)}">{inputs}{fields}'
            f'<button type="submit">{e(button)}</button></form>')


def page(ctx: Ctx, view: str, body: str, site_name: str, extra: str = "",
         now: int | None = None) -> str:
    """The whole document around a view's fragment (`now`: the snapshot's clock, from which
    the page's script writes alert ages)."""
    tabs = "".join(f'<a href="/{v}" class="{"on" if v == view else ""}"'
                   f'{" aria-current=page" if v == view else ""}>{e(t(ctx.lang, v))}</a>'
                   for v in VIEWS)
    other = "en" if ctx.lang == "zh" else "zh"
    return f"""<!doctype html>
<html lang="{LANGS[ctx.lang]}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{e(ctx.csrf)}">
<title>{e(t(ctx.lang, "title"))} - {e(t(ctx.lang, view))}</title>
<link rel="stylesheet" href="/static/desk.css"></head>
<body data-view="{e(view)}" data-extra="{e(extra)}"{f' data-now="{now}"' if now else ""}>
<header><strong>{e(site_name)}</strong><nav>{tabs}</nav>
<span class="me">{e(t(ctx.lang, "signed_in_as"))} {e(ctx.name)} ({e(ctx.user)})</span>
<a href="/lang?to={other}" class="lang" hreflang="{LANGS[other]}">{e(t(ctx.lang, "language"))}</a>
<form method="post" action="/signout" class="inline"><input type="hidden" name="csrf"
 value="{e(ctx.csrf)}"><button type="submit">{e(t(ctx.lang, "signout"))}</button></form>
</header>
<div id="banner" role="status" hidden>{e(t(ctx.lang, "reconnecting"))}</div>
<div id="result" role="status" aria-live="polite"></div>
<section id="evidence" hidden></section>
<main id="view">{body}</main>
<aside><h2>{e(t(ctx.lang, "feed"))}</h2><ol id="feed"></ol></aside>
<script src="/static/desk.js"></script>
</body></html>"""


def signin_page(lang: str, failed: bool) -> str:
    """The sign-in form (labelled User / Password, button Sign in)."""
    msg = f'<p class="err" role="alert">{e(t(lang, "signin_failed"))}</p>' if failed else ""
    return f"""<!doctype html>
<html lang="{LANGS[lang]}"><head><meta charset="utf-8"><title>{e(t(lang, "title"))}</title>
<link rel="stylesheet" href="/static/desk.css"></head><body class="signin">
<main><h1>{e(t(lang, "title"))}</h1>{msg}
<form method="post" action="/signin">
<label for="user">{e(t(lang, "user"))}</label>
<input id="user" name="user" autocomplete="username" required>
<label for="password">{e(t(lang, "password"))}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">{e(t(lang, "signin"))}</button></form></main></body></html>"""


def _sev(ctx: Ctx, sev: str) -> str:
    return f'<span class="sev {e(sev)}">{e(t(ctx.lang, sev))}</span>'


def _doors(ctx: Ctx, doors: list[tuple[str, str]]) -> str:
    """A room's doors: each named when few, else counted by state (a corridor has many)."""
    if not doors:
        return "-"
    if len(doors) <= 2:
        return ", ".join(f"{e(d)}: <b class=\"door {e(s)}\">{e(s)}</b>" for d, s in doors)
    by: dict[str, int] = {}
    for _d, st in doors:
        by[st] = by.get(st, 0) + 1
    return ", ".join(f'<b class="door {e(st)}">{e(st)}</b> ×{n}' for st, n in sorted(by.items()))


def _visitor(ctx: Ctx, v: dict[str, Any]) -> str:
    """A visitor or lawyer in a room: name, role and whom they came to see."""
    who = f"{v['name']} ({v['id']})" if v.get("name") and v["name"] != v["id"] else v["id"]
    role = t(ctx.lang, "role_" + v["role"]) if v["role"] in ("visitor", "lawyer") else v["role"]
    to = f" {t(ctx.lang, 'visiting')} {v['client']}" if v.get("client") else ""
    return (f'<li class="vis {e(v["role"])}" data-role="{e(v["role"])}">{e(who)} '
            f'<small>{e(role)}{e(to)}</small></li>')


def _tile(snap: dict[str, Any], ctx: Ctx, r: dict[str, Any]) -> str:
    pos = r["position"]
    style = f' style="grid-column:{pos[0]};grid-row:{pos[1]}"' if pos else ""
    worst = min((SEV_ORDER.get(a["severity"], 3) for a in r["alerts"]), default=3)
    cls = {0: "critical", 1: "warning", 2: "info"}.get(worst, "")
    people = [f'<li class="off">{_who(snap, o)}</li>' for o in r["officers"]]
    people += [f'<li class="det">{_who(snap, d)}</li>' for d in r["detainees"]]
    people += [_visitor(ctx, v) for v in r.get("visitors", ())]
    if r["unregistered"]:
        people.append(f'<li class="unk">{r["unregistered"]} {e(t(ctx.lang, "unregistered"))}'
                      "</li>")
    cam = r["camera"]
    cam_txt = (t(ctx.lang, "no_camera") if cam is None else
               t(ctx.lang, "live") if cam else t(ctx.lang, "not_live"))
    doors = _doors(ctx, r["doors"])
    alerts = "".join(f'<li class="sev {e(a["severity"])}">{e(a["rule"])}</li>'
                     for a in r["alerts"])
    return (f'<section class="tile {cls}" data-room="{e(r["id"])}" data-key="{e(r["id"])}"'
            f'{style} aria-label="{e(r["name"])}"><h3>{e(r["name"])} '
            f'<small>{e(r["kind"])}</small></h3>'
            f'<ul class="people">{"".join(people) or "<li>" + e(t(ctx.lang, "nobody"))}</ul>'
            f'<p>{e(t(ctx.lang, "camera"))}: '
            f'<b class="cam {"na" if cam is None else "ok" if cam else "bad"}">'
            f'{e(cam_txt)}</b> · {e(t(ctx.lang, "door"))}: {doors}</p>'
            f'<ul class="ralerts">{alerts}</ul></section>')


def floor_view(snap: dict[str, Any], ctx: Ctx) -> View:
    """Every room as a tile: people (officers, detainees, visitors and lawyers), camera,
    doors, open alerts."""
    tiles = [(r["id"], _tile(snap, ctx, r)) for r in snap["rooms"]]
    return View(f'<h1>{e(t(ctx.lang, "floor"))}</h1><div class="floor" data-list="floor">'
                f'{slot("floor")}</div>', {"floor": tiles})


def floor(snap: dict[str, Any], ctx: Ctx) -> str:
    """The floor's markup."""
    return floor_view(snap, ctx).html()


def _alert_row(snap: dict[str, Any], ctx: Ctx, a: dict[str, Any]) -> str:
    # No clock in the row: the age is written by the page's script from data-since and the
    # snapshot's time, so a row changes only when its alert does (and is only then re-sent).
    acked = a.get("acked_ts")
    state = t(ctx.lang, "open")
    if acked:
        state = t(ctx.lang, "acked_by").format(
            who=snap["names"].get(a["acked_by"], a["acked_by"]),
            dur=fmt_dur(acked - a["raised_ts"]))
        if a.get("action"):
            state += f": {a['action']}"
    acts = []
    if not acked and ctx.can("ack-alert"):
        acts.append(_form(ctx, "ack-alert", {"alert": a["id"]},
                          f'<input name="action" required aria-label="'
                          f'{e(t(ctx.lang, "action_taken"))}" placeholder="'
                          f'{e(t(ctx.lang, "action_taken"))}">', t(ctx.lang, "acknowledge")))
    if ctx.can("resolve-alert"):
        acts.append(_form(ctx, "resolve-alert", {"alert": a["id"]},
                          f'<input name="note" aria-label="{e(t(ctx.lang, "note"))}" '
                          f'placeholder="{e(t(ctx.lang, "note"))}">', t(ctx.lang, "resolve")))
    if ctx.can("false-alarm"):
        acts.append(_form(ctx, "false-alarm", {"alert": a["id"]},
                          f'<input name="note" required aria-label="{e(t(ctx.lang, "reason"))}" '
                          f'placeholder="{e(t(ctx.lang, "reason"))}">',
                          t(ctx.lang, "false_alarm")))
    if a.get("evidence") and ctx.can("view-evidence"):
        # The masked clip the node kept around it: fetched, checked and journaled as this
        # account (supervisor/evidence.py); desk.js shows it under the queue.
        acts.append(_form(ctx, "view-evidence", {"alert": a["id"]}, "",
                          t(ctx.lang, "view_evidence"), "evidence"))
    return (f'<tr class="sev-{e(a["severity"])}{" acked" if acked else ""}" '
            f'data-alert="{e(a["id"])}" data-key="{e(a["id"])}"><td>{_sev(ctx, a["severity"])}</td>'
            f'<td class="rule">{e(a["rule"])}</td>'
            f'<td>{e(meaning(ctx.lang, a["rule"]))}<br><small>{e(a["message"])}</small></td>'
            f'<td>{_who(snap, a["detainee"])}</td><td>{e(a["room"] or "-")}</td>'
            f'<td>{fmt_time(a["raised_ts"], ctx.tz)}<br>'
            f'<span class="age" data-since="{int(a["raised_ts"])}"></span></td>'
            f'<td>{a["escalations"]}</td><td class="state">{e(state)}</td>'
            f'<td class="acts">{"".join(acts)}</td></tr>')


def _closed_item(ctx: Ctx, a: dict[str, Any]) -> str:
    return (f'<li data-key="{e(a["id"])}">{fmt_time(a["closed_ts"], ctx.tz)} '
            f'<span class="rule">{e(a["rule"])}</span> '
            f'{e(a["detainee"] or a["room"] or "")} → {e(a["state"])}'
            f'{" " + t(ctx.lang, "by") + " " + e(a["by"]) if a.get("by") else ""}'
            f'{": " + e(a["action"]) if a.get("action") else ""}</li>')


ROW_COMMANDS = ("ack-alert", "resolve-alert", "false-alarm", "view-evidence")


def _alert_rows(snap: dict[str, Any], ctx: Ctx, rows: list[dict[str, Any]],
                memo: dict[Any, str] | None) -> list[tuple[str, str]]:
    """Each alert's row; with a memo (one per stream), a row is rendered again only when its
    alert, the names it shows or the viewer's permissions changed (a long queue costs the
    supervisor's GIL one row per change, not every row)."""
    if memo is None:
        return [(str(a["id"]), _alert_row(snap, ctx, a)) for a in rows]
    names, perms = snap["names"], tuple(ctx.can(c) for c in ROW_COMMANDS)
    out, kept = [], {}
    for a in rows:
        key: Any = (tuple(a.values()), names.get(a["detainee"]), names.get(a["acked_by"]),
                    perms)
        try:
            row = memo.get(key) or _alert_row(snap, ctx, a)
        except TypeError:  # an unhashable value: render it, do not keep it
            row, key = _alert_row(snap, ctx, a), None
        if key is not None:
            kept[key] = row
        out.append((str(a["id"]), row))
    memo.clear()
    memo.update(kept)
    return out


def alerts_view(snap: dict[str, Any], ctx: Ctx, memo: dict[Any, str] | None = None) -> View:
    """Open alerts by severity, then age; recently closed below."""
    rows = sorted(snap["alerts"], key=lambda a: (SEV_ORDER.get(a["severity"], 3),
                                                 a["raised_ts"]))
    head = "".join(f"<th>{e(t(ctx.lang, k))}</th>" for k in
                   ("severity", "rule", "meaning", "detainee", "room", "age", "escalations",
                    "state", "actions"))
    items = _alert_rows(snap, ctx, rows, memo)
    table = (f'<table class="queue"><thead><tr>{head}</tr></thead>'
             f'<tbody data-list="queue">{slot("queue")}</tbody></table>'
             if rows else f'<p>{e(t(ctx.lang, "no_alerts"))}</p>')
    closed: list[tuple[str, str]] = []
    for a in snap["closed"]:  # newest first; an alert once (its key on the page)
        if all(k != str(a["id"]) for k, _h in closed):
            closed.append((str(a["id"]), _closed_item(ctx, a)))
    lists = {"queue": items, "closed": closed} if rows else {"closed": closed}
    return View(f'<h1>{e(t(ctx.lang, "alerts"))}</h1>{table}'
                f'<h2>{e(t(ctx.lang, "recent_closed"))}</h2>'
                f'<ul class="closed" data-list="closed">{slot("closed")}</ul>', lists)


def alerts(snap: dict[str, Any], ctx: Ctx) -> str:
    """The alert queue's markup."""
    return alerts_view(snap, ctx).html()


def detainees_view(snap: dict[str, Any], ctx: Ctx) -> View:
    """One row per person in custody: clock, steps, welfare."""
    rows: list[tuple[str, str]] = []
    for d in snap["detainees"]:
        if d["status"] == "exited":
            continue
        pct = 100 * d["used_ms"] // max(1, d["limit_ms"])
        steps = " ".join(
            f'<span class="step {"done" if d["steps"][s] else "todo"}">'
            f'{"✓" if d["steps"][s] else "✗"} {e(t(ctx.lang, "steps_" + s))}</span>'
            for s in STEPS)
        lw = d["last_welfare"]
        last = (f'{fmt_time(lw["ts"], ctx.tz)} {e(t(ctx.lang, "by"))} {_who(snap, lw["officer"])}'
                if lw else e(t(ctx.lang, "none_yet")))
        due = "-" if d["next_due"] is None else fmt_time(d["next_due"], ctx.tz)
        if d["overdue"]:
            due += f' <b>{e(t(ctx.lang, "overdue"))}</b>'
        row = (
            f'<tr class="{"overdue" if d["overdue"] else ""}" data-detainee="{e(d["id"])}" '
            f'data-key="{e(d["id"])}">'
            f'<td><a href="/record/{e(d["id"])}">{_who(snap, d["id"])}</a><br>'
            f'<small>{e(t(ctx.lang, "case"))} {e(d["case"])} · {e(d["room"] or "-")} · '
            f'{e(t(ctx.lang, d["status"]))}</small></td><td>{e(d["custody_type"])}</td>'
            f'<td class="{"late" if pct >= 90 else ""}">{fmt_dur(d["used_ms"])} / '
            f'{fmt_dur(d["limit_ms"])} ({pct} %)<br>'
            f'<meter min="0" max="100" value="{min(pct, 100)}"></meter></td><td>{steps}</td>'
            f'<td>{e(d["observation"])}</td><td>{last}</td>'
            f'<td class="due">{due}</td></tr>')
        rows.append((str(d["id"]), row))
    head = "".join(f"<th>{e(t(ctx.lang, k))}</th>" for k in
                   ("detainee", "custody_type", "time_used", "steps", "observation",
                    "last_welfare", "next_due"))
    table = (f'<table class="people"><thead><tr>{head}</tr></thead>'
             f'<tbody data-list="detainees">{slot("detainees")}</tbody></table>'
             if rows else f'<p>{e(t(ctx.lang, "no_detainees"))}</p>')
    return View(f'<h1>{e(t(ctx.lang, "detainees"))}</h1>{table}',
                {"detainees": rows} if rows else {})


def detainees(snap: dict[str, Any], ctx: Ctx) -> str:
    """The detainees' markup."""
    return detainees_view(snap, ctx).html()


def record(snap: dict[str, Any], ctx: Ctx, detainee: str,
           data: tuple[str | None, list[tuple[int, str]]] | None) -> str:
    """One detainee's whole timeline (the lines `custody record` prints), printable."""
    links = " ".join(f'<a href="/record/{e(d["id"])}">{e(d["id"])}</a>'
                     for d in snap["detainees"])
    out = [f'<h1>{e(t(ctx.lang, "record"))}</h1><p class="noprint">'
           f'{e(t(ctx.lang, "choose_detainee"))}: {links}</p>']
    if not detainee:
        return "".join(out)
    if data is None or data[0] is None:
        return "".join(out) + f'<p>{e(t(ctx.lang, "no_record"))}</p>'
    head, lines = data
    rows = "".join(f'<tr><td>{fmt_time(ts, ctx.tz, True)}</td><td>{e(text)}</td></tr>'
                   for ts, text in lines)
    out.append(f'<h2>{e(head)}</h2><button type="button" '
               f'class="print noprint">{e(t(ctx.lang, "print"))}</button>'
               f'<table class="record"><thead><tr><th>{e(t(ctx.lang, "time"))} '
               f'({e(str(ctx.tz))})</th><th>{e(t(ctx.lang, "event"))}</th></tr></thead>'
               f'<tbody>{rows}</tbody></table>')
    return "".join(out)


def approvals(snap: dict[str, Any], ctx: Ctx) -> str:
    """Approvals for each person in custody, with buttons only for roles that may give them."""
    cmds = ("approve-disposition", "approve-temporary-exit", "approve-extension")
    allowed = [c for c in cmds if ctx.can(c)]
    out = [f'<h1>{e(t(ctx.lang, "approvals"))}</h1>']
    if not allowed:
        out.append(f'<p>{e(t(ctx.lang, "no_approvals"))}</p>')
    rows = []
    for d in snap["detainees"]:
        if d["status"] == "exited":
            continue
        acts = []
        if "approve-disposition" in allowed and not d["disposition"]:
            opts = "".join(f'<option value="{x}">{x}</option>' for x in DISPOSITIONS)
            acts.append(_form(ctx, "approve-disposition", {"detainee": d["id"]},
                              f'<select name="disposition" aria-label="'
                              f'{e(t(ctx.lang, "disposition"))}">{opts}</select>',
                              t(ctx.lang, "approve_disposition")))
        if "approve-temporary-exit" in allowed and d["status"] == "in-custody":
            acts.append(_form(ctx, "approve-temporary-exit", {"detainee": d["id"]},
                              f'<input name="return_in_min" type="number" min="1" value="60" '
                              f'aria-label="{e(t(ctx.lang, "return_by"))}">'
                              f'<input name="reason" required aria-label="'
                              f'{e(t(ctx.lang, "reason"))}" placeholder="'
                              f'{e(t(ctx.lang, "reason"))}">', t(ctx.lang, "approve_temp_exit")))
        ext = snap["custody_types"].get(d["custody_type"], {}).get("extended_h", [])
        if "approve-extension" in allowed and ext and not d["extension_h"]:
            opts = "".join(f'<option value="{h}">{h}</option>' for h in ext)
            acts.append(_form(ctx, "approve-extension", {"detainee": d["id"]},
                              f'<select name="hours" aria-label="{e(t(ctx.lang, "hours"))}">'
                              f'{opts}</select>', t(ctx.lang, "approve_extension")))
        state = e(d["disposition"] or "-")
        rows.append(f'<tr data-detainee="{e(d["id"])}"><td>{_who(snap, d["id"])}</td>'
                    f'<td>{e(d["room"] or "-")}</td><td>{e(t(ctx.lang, d["status"]))}</td>'
                    f'<td>{state}</td><td class="acts">{"".join(acts)}</td></tr>')
    head = "".join(f"<th>{e(t(ctx.lang, k))}</th>" for k in
                   ("detainee", "room", "status", "disposition", "actions"))
    out.append(f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return "".join(out)


def inspection(snap: dict[str, Any], ctx: Ctx, extra: dict[str, Any]) -> str:
    """Findings, refused actions and false-alarm statistics for the legal officer."""
    out = [f'<h1>{e(t(ctx.lang, "inspection"))}</h1>']
    if ctx.can("view-evidence"):  # = roles.REPORT_ROLES, who may read the report
        out.append(f'<p><a href="/report" class="report">{e(t(ctx.lang, "report"))}</a></p>')
    if ctx.can("record-finding") and extra.get("finding_command"):
        sevs = "".join(f'<option value="{x}">{x}</option>' for x in ("note", "concern", "breach"))
        out.append(_form(ctx, "record-finding", {},
                         f'<input name="detainee" aria-label="{e(t(ctx.lang, "subject"))}" '
                         f'placeholder="{e(t(ctx.lang, "subject"))}">'
                         f'<select name="severity" aria-label="{e(t(ctx.lang, "severity"))}">'
                         f'{sevs}</select><input name="finding" required '
                         f'aria-label="{e(t(ctx.lang, "finding"))}" placeholder="'
                         f'{e(t(ctx.lang, "finding"))}">', t(ctx.lang, "record_finding")))
    findings = "".join(f'<li>{fmt_time(f["ts"], ctx.tz, True)} {_who(snap, f["by"])} '
                       f'[{e(f.get("severity") or "note")}] {e(f.get("detainee") or "")}: '
                       f'{e(f["finding"])}</li>' for f in extra.get("findings", []))
    refused = "".join(f'<li>{fmt_time(r.get("ts"), ctx.tz, True)} {_who(snap, r.get("user"))} '
                      f'{e(r.get("command"))}: {e(r.get("reason"))}</li>'
                      for r in extra.get("refused", []))
    stats = "".join(f"<li>{e(rule)}: {n}</li>" for rule, n in sorted(snap["false_alarms"].items()))
    out.append(f'<h2>{e(t(ctx.lang, "findings"))}</h2><ul>{findings}</ul>'
               f'<h2>{e(t(ctx.lang, "refused_actions"))}</h2><ul>{refused}</ul>'
               f'<h2>{e(t(ctx.lang, "false_alarm_stats"))}</h2><ul>{stats}</ul>')
    return "".join(out)
