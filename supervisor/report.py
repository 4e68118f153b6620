"""`custody report`: a period's compliance report, like an inspection bulletin (HTML + CSV).

Alerts per rule, per room and per officer (who acknowledged or closed them), time to
acknowledge, false-alarm rate per rule, and each detainee's time in custody against the
legal limit. Built by replaying the journal, so it shows exactly what the supervisor knew.
"""

import argparse
import csv
import html
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from protocol.clock import from_env
from protocol.site import DEMO_SITE, load_site
from protocol.timearg import parse_time

from .cli import fmt_ts, replay
from .rules.limits import limit_ms
from .state import State


def collect(state: State, start: int, end: int) -> dict[str, Any]:
    """Every figure of the report for alerts raised in [start, end) (from an archive-mode
    state: a live one has let closed alerts and released records go)."""
    if not state.archive:
        raise ValueError("the report needs the whole history: fold the journal with "
                         "State(site, archive=True) (supervisor/history.py)")
    alerts = [a for a in state.alerts.values() if start <= a["raised_ts"] < end]
    per_rule: Counter[str] = Counter()
    per_room: Counter[str] = Counter()
    per_officer: Counter[str] = Counter()
    ack_s: dict[str, list[float]] = defaultdict(list)
    false_by_rule: Counter[str] = Counter()
    for a in alerts:
        per_rule[a["rule"]] += 1
        per_room[a.get("room") or "-"] += 1
        if a.get("acked_by"):
            per_officer[a["acked_by"]] += 1
            ack_s[a["rule"]].append((a["acked_ts"] - a["raised_ts"]) / 1000)
        elif a["state"] in ("resolved", "false_alarm") and a.get("by"):
            per_officer[a["by"]] += 1
        if a["state"] == "false_alarm":
            false_by_rule[a["rule"]] += 1
    rules = []
    for rule, n in sorted(per_rule.items()):
        times = ack_s.get(rule, [])
        rules.append({"rule": rule, "alerts": n, "acknowledged": len(times),
                      "median_ack_s": round(statistics.median(times), 1) if times else "",
                      "max_ack_s": round(max(times), 1) if times else "",
                      "false_alarms": false_by_rule[rule],
                      "false_alarm_rate_pct": round(100 * false_by_rule[rule] / n, 1)})
    custody = []
    for c in sorted(state.detainees.values(), key=lambda c: c.arrived_ms):
        if c.arrived_ms >= end or (c.exit_ms is not None and c.exit_ms < start):
            continue
        until = c.exit_ms if c.exit_ms is not None else min(end, max(state.last_ts, start))
        held_h = (until - c.arrived_ms) / 3_600_000
        limit_h = limit_ms(state, c.id) / 3_600_000
        custody.append({"detainee": c.id, "case": c.case, "custody_type": c.custody_type,
                        "arrived": fmt_ts(c.arrived_ms), "exit": fmt_ts(c.exit_ms),
                        "hours": round(held_h, 2), "limit_h": round(limit_h, 2),
                        "pct_of_limit": round(100 * held_h / limit_h, 1),
                        "over_limit": held_h > limit_h})
    refused: Counter[tuple[str, str]] = Counter()
    for r in state.refused:
        if start <= int(r.get("ts", 0)) < end:
            # (a throttled account's requests are journaled as one entry with their count)
            refused[(r["user"], _reason(r["reason"]))] += int(r.get("count", 1))
    return {"alerts": alerts, "rules": rules,
            "refused": [{"account": u, "reason": why, "count": n}
                        for (u, why), n in sorted(refused.items())],
            "refused_actions": [r for r in state.refused
                                if start <= int(r.get("ts", 0)) < end],
            "rooms": [{"room": r, "alerts": n} for r, n in sorted(per_room.items())],
            "officers": [{"officer": o, "alerts_handled": n} for o, n in
                         sorted(per_officer.items())],
            "custody": custody}


def _reason(text: str) -> str:
    """A refusal's reason without the names and values that make each one unique."""
    for key, label in (("may not do this", "role does not allow it"),
                       ("own team", "four eyes: approver on the detainee's team"),
                       ("names user", "payload names another user"),
                       ("retained", "retained request"),
                       ("already used", "transaction id reused"),
                       ("unknown account", "unknown account"),
                       ("is disabled", "disabled account"),
                       ("unjournaled while throttled", "over the request budget (throttled)")):
        if key in text:
            return label
    return text[:80]  # a state check, e.g. "record-search: detainee 'dx' is not registered"


def _csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _chart(path: Path, labels: list[str], values: list[float], title: str, xlabel: str,
           limit: list[float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, max(2.0, 0.35 * len(labels) + 1)))
    ax.barh(labels or ["(none)"], values or [0], color="#4477aa")
    if limit:
        ax.scatter(limit, labels, color="#cc3311", marker="|", s=300, label="legal limit")
        ax.legend(loc="lower right")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(rows: list[dict[str, Any]], fields: list[str]) -> str:
    head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(f, '')))}</td>" for f in fields)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


# The report's words: English and Simplified Chinese, as the desk (`--lang`, the desk's
# page language). Column names stay the CSV field names in both (they are data keys).
WORDS: dict[str, dict[str, str]] = {
    "en": {"title": "Custody compliance report: {site}",
           "period": "Period {start} to {end} (UTC). {alerts} alerts, {detainees} detainees, "
                     "{over} held past their limit.",
           "per_rule": "Alerts per rule", "false": "False alarms", "per_room": "Alerts per room",
           "per_officer": "Alerts handled per officer",
           "custody": "Time in custody against the limit",
           "refused_by_account": "Refused staff actions by account and reason",
           "refused": "Refused staff actions", "doc": "Custody report"},
    "zh": {"title": "羁押合规报告：{site}",
           "period": "统计期间 {start} 至 {end}（UTC）。告警 {alerts} 条，被管控人员 "
                     "{detainees} 人，超期羁押 {over} 人。",
           "per_rule": "各规则告警数", "false": "误报", "per_room": "各房间告警数",
           "per_officer": "各民警处置告警数", "custody": "羁押时长与法定时限",
           "refused_by_account": "被拒绝的操作（按账户与原因）", "refused": "被拒绝的操作",
           "doc": "羁押报告"},
}
LANGS = tuple(WORDS)


def report_tables(f: dict[str, Any]) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """The report's tables: name -> (rows, columns)."""
    return {
        "alerts_per_rule": (f["rules"], ["rule", "alerts", "acknowledged", "median_ack_s",
                                         "max_ack_s", "false_alarms", "false_alarm_rate_pct"]),
        "alerts_per_room": (f["rooms"], ["room", "alerts"]),
        "alerts_per_officer": (f["officers"], ["officer", "alerts_handled"]),
        "time_in_custody": (f["custody"], ["detainee", "case", "custody_type", "arrived",
                                           "exit", "hours", "limit_h", "pct_of_limit",
                                           "over_limit"]),
        "refused_by_account": (f["refused"], ["account", "reason", "count"]),
        "refused_actions": (f["refused_actions"], ["ts", "user", "command", "txn", "reason"]),
        "alerts": (sorted(f["alerts"], key=lambda a: a["raised_ts"]),
                   ["id", "rule", "severity", "state", "detainee", "room", "raised_ts",
                    "acked_by", "acked_ts", "message"]),
    }


def report_html(site_name: str, f: dict[str, Any], start: int, end: int, lang: str = "en",
                charts: bool = True) -> str:
    """The report as one HTML document in `lang` (`charts`: with the PNGs beside it)."""
    w = WORDS[lang if lang in WORDS else "en"]
    tables = report_tables(f)
    over = sum(1 for c in f["custody"] if c["over_limit"])

    def img(name: str) -> str:
        return f"<img src='{name}.png'>" if charts else ""
    sections = [
        f"<h1>{html.escape(w['title'].format(site=site_name))}</h1>",
        "<p>" + html.escape(w["period"].format(start=fmt_ts(start), end=fmt_ts(end),
                                               alerts=len(f["alerts"]),
                                               detainees=len(f["custody"]), over=over))
        + "</p>",
        f"<h2>{w['per_rule']}</h2>{img('alerts_per_rule')}",
        _table(*tables["alerts_per_rule"]),
        f"<h2>{w['false']}</h2>{img('false_alarm_rate')}",
        f"<h2>{w['per_room']}</h2>", _table(*tables["alerts_per_room"]),
        f"<h2>{w['per_officer']}</h2>", _table(*tables["alerts_per_officer"]),
        f"<h2>{w['custody']}</h2>{img('time_in_custody')}",
        _table(*tables["time_in_custody"]),
        f"<h2>{w['refused_by_account']}</h2>",
        _table(*tables["refused_by_account"]),
        f"<h2>{w['refused']}</h2>", _table(*tables["refused_actions"]),
    ]
    style = ("<style>body{font-family:sans-serif,'Noto Sans CJK SC';max-width:60em;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}"
             "</style>")
    html_lang = "zh-CN" if lang == "zh" else "en"
    return (f"<!doctype html><html lang='{html_lang}'><head><meta charset='utf-8'>"
            f"<title>{w['doc']}</title>{style}</head><body>" + "\n".join(sections)
            + "</body></html>\n")


def write_report(state: State, start: int, end: int, out: Path, lang: str = "en"
                 ) -> dict[str, Any]:
    """Write report.html (in `lang`), charts and CSV files into `out`; return the figures."""
    out.mkdir(parents=True, exist_ok=True)
    f = collect(state, start, end)
    tables = report_tables(f)
    for name, (rows, fields) in tables.items():
        _csv(out / f"{name}.csv", rows, fields)
    # Chart text stays English: matplotlib's default font has no CJK glyphs.
    _chart(out / "alerts_per_rule.png", [r["rule"] for r in f["rules"]],
           [r["alerts"] for r in f["rules"]], "Alerts per rule", "alerts")
    _chart(out / "false_alarm_rate.png", [r["rule"] for r in f["rules"]],
           [r["false_alarm_rate_pct"] for r in f["rules"]], "False-alarm rate per rule", "%")
    _chart(out / "time_in_custody.png", [c["detainee"] for c in f["custody"]],
           [c["hours"] for c in f["custody"]], "Time in custody", "hours",
           limit=[c["limit_h"] for c in f["custody"]])
    (out / "report.html").write_text(report_html(state.site.name, f, start, end, lang))
    return f


def _run(args: argparse.Namespace) -> int:
    db = args.db or load_site(args.config).supervisor.db
    state = replay(args.config, db)
    try:
        start = parse_time(args.from_) if args.from_ else 0
        # Without --to: everything journaled so far (a far-future bound can't be printed).
        latest = max((a["raised_ts"] for a in state.alerts.values()), default=0)
        end = parse_time(args.to) if args.to else max(latest + 1, from_env().now_ms())
    except ValueError as e:
        print(f"custody report: --from/--to: {e} (use ISO time or Unix ms)", file=sys.stderr)
        return 2
    f = write_report(state, start, end, Path(args.out), args.lang)
    for r in f["refused"]:
        print(f"refused: {r['account']}: {r['reason']} x{r['count']}")
    print(f"report: {len(f['alerts'])} alerts, {len(f['custody'])} detainees, "
          f"{len(f['refused_actions'])} refused staff actions -> "
          f"{Path(args.out) / 'report.html'}")
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody report`."""
    p = sub.add_parser("report", help="compliance report for a period (HTML with charts + CSV)")
    p.add_argument("--db", help="journal (default: the site's supervisor.db)")
    p.add_argument("--config", "--site", dest="config", default=str(DEMO_SITE),
                   help="site file the journal belongs to")
    p.add_argument("--from", dest="from_", help="start (ISO time, UTC, or Unix ms)")
    p.add_argument("--to", help="end (ISO time, UTC, or Unix ms)")
    p.add_argument("--out", required=True, help="directory to write into")
    p.add_argument("--lang", choices=LANGS, default="en",
                   help="language of report.html: en (English) or zh (Simplified Chinese)")
    p.set_defaults(func=_run)
