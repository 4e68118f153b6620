"""`custody bulletin`: the bureau's inspection bulletin for a period, HTML (charts) + CSV,
in English and Simplified Chinese, from the reporting tables the workers fill.

Problems found are alerts that were not marked false alarms, refused staff actions, overdue
welfare checks and time-limit breaches. A site's inspection rate is the share of its custody
records (detainees registered in the period) that a legal officer's finding names.
"""

import csv
import datetime as dt
import html
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OVERDUE_RULES = ("welfare-check",)
LIMIT_RULES = ("time-limit", "temporary-exit-overdue")

TEXT = {
    "en": {
        "title": "Inspection bulletin", "period": "Period", "generated": "Generated",
        "sites": "Sites", "site": "Site", "records": "Custody records",
        "problems": "Problems found", "alerts": "Alerts (not false)", "false": "False alarms",
        "refused": "Refused actions", "overdue": "Overdue checks", "limits": "Time-limit breaches",
        "ack": "Median time to acknowledge (s)", "inspection": "Inspection rate",
        "findings": "Findings", "open": "Open findings", "witness": "Chain witness",
        "ok": "verified", "tampered": "SECURITY ALERT", "officers": "Officers",
        "officer": "Officer", "handled": "Alerts handled", "rules": "False-alarm rate per rule",
        "rule": "Rule", "rate": "False-alarm rate", "all_alerts": "Alerts raised",
        "finding": "Finding", "detainee": "Detainee",
        "by": "By", "state": "Rectification", "deadline": "Deadline", "when": "When",
        "best": "Best sites", "worst": "Worst sites", "best_cases": "Best cases",
        "worst_cases": "Worst cases", "case": "Case (site / detainee)",
        "per_record": "Problems per custody record", "security": "Bureau security alerts",
        "kind": "Kind", "detail": "Detail", "none": "none",
    },
    "zh": {
        "title": "执法监督通报", "period": "通报期间", "generated": "生成时间",
        "sites": "各办案单位", "site": "单位", "records": "办案记录数",
        "problems": "发现问题", "alerts": "告警（非误报）", "false": "误报",
        "refused": "被拒绝的操作", "overdue": "巡查超时", "limits": "超期羁押",
        "ack": "确认告警中位时长（秒）", "inspection": "检查覆盖率",
        "findings": "法制员检查发现", "open": "未整改问题", "witness": "日志链见证",
        "ok": "已核验", "tampered": "安全告警", "officers": "民警",
        "officer": "民警", "handled": "处理告警数", "rules": "各规则误报率",
        "rule": "规则", "rate": "误报率", "all_alerts": "告警总数",
        "finding": "发现问题", "detainee": "被管理人员",
        "by": "检查人", "state": "整改状态", "deadline": "整改期限", "when": "时间",
        "best": "最佳单位", "worst": "最差单位", "best_cases": "优秀案件",
        "worst_cases": "问题案件", "case": "案件（单位 / 人员）",
        "per_record": "每条办案记录问题数", "security": "监督中心安全告警",
        "kind": "类型", "detail": "详情", "none": "无",
    },
}


@dataclass
class SiteFigures:
    """Every figure of one site in the period."""

    site: str
    records: int = 0
    alerts: int = 0
    false_alarms: int = 0
    refused: int = 0
    overdue: int = 0
    limits: int = 0
    ack_s: list[float] = field(default_factory=list)
    inspected: int = 0
    findings: int = 0
    open_findings: int = 0
    tampered: bool = False

    @property
    def problems(self) -> int:
        """Problems found: real alerts and refused actions (overdue/limits are alerts too)."""
        return self.alerts + self.refused

    @property
    def inspection_rate(self) -> float:
        """Share of custody records a legal officer's finding names."""
        return self.inspected / self.records if self.records else 0.0

    @property
    def per_record(self) -> float:
        """Problems per custody record (the ranking of sites)."""
        return self.problems / max(1, self.records)


def collect(dsn: str, start: int, end: int) -> dict[str, Any]:
    """Query the reporting tables for [start, end) and compute the bulletin's figures."""
    import psycopg
    with psycopg.connect(dsn) as c:
        site_rows = list(c.execute("SELECT site, tampered, last_idx, cp_count FROM bureau_site "
                                   "ORDER BY site"))
        alerts = list(c.execute(
            "SELECT site, alert_id, rule, detainee, raised_ts, acked_ts, acked_by, "
            "closed_state, closed_by FROM report_alert WHERE raised_ts >= %s AND raised_ts < %s",
            (start, end)))
        staff = list(c.execute(
            "SELECT site, idx, ts, account, command, ok, detainee, args FROM report_staff "
            "WHERE ts >= %s AND ts < %s ORDER BY site, idx", (start, end)))
        security = list(c.execute("SELECT site, kind, idx, detail, raised FROM security_alert "
                                  "ORDER BY id"))
    sites = {r[0]: SiteFigures(r[0], tampered=bool(r[1])) for r in site_rows}
    officers: dict[str, dict[str, Any]] = defaultdict(lambda: {"handled": 0, "ack_s": [],
                                                               "refused": 0})
    per_rule: Counter[str] = Counter()
    false_rule: Counter[str] = Counter()
    case_problems: Counter[tuple[str, str]] = Counter()
    cases: set[tuple[str, str]] = set()
    findings: list[dict[str, Any]] = []
    inspected: dict[str, set[str]] = defaultdict(set)
    for site, _aid, rule, detainee, raised, acked, acked_by, closed, closed_by in alerts:
        f = sites.setdefault(site, SiteFigures(site))
        per_rule[rule] += 1
        if closed == "false_alarm":
            f.false_alarms += 1
            false_rule[rule] += 1
        else:
            f.alerts += 1
            f.overdue += rule in OVERDUE_RULES
            f.limits += rule in LIMIT_RULES
            if detainee:
                case_problems[(site, detainee)] += 1
        who = acked_by or closed_by
        if who:
            officers[f"{site}/{who}"]["handled"] += 1
        if acked is not None:
            f.ack_s.append((acked - raised) / 1000)
            if acked_by:
                officers[f"{site}/{acked_by}"]["ack_s"].append((acked - raised) / 1000)
    for site, idx, ts, account, command, ok, detainee, args in staff:
        f = sites.setdefault(site, SiteFigures(site))
        if not ok:
            f.refused += 1
            officers[f"{site}/{account}"]["refused"] += 1
            continue
        if command == "register-detainee" and detainee:
            f.records += 1
            cases.add((site, detainee))
        elif command == "record-finding":
            f.findings += 1
            state = str(args.get("rectification") or args.get("state") or "open")
            f.open_findings += state not in ("done", "rectified", "closed")
            if detainee:
                inspected[site].add(detainee)
            findings.append({"site": site, "idx": idx, "ts": ts, "by": account,
                             "detainee": detainee or "", "finding": str(args.get("finding", "")),
                             "severity": str(args.get("severity", "")), "state": state,
                             "deadline": args.get("deadline_ts") or args.get("deadline") or ""})
    for site, f in sites.items():
        f.inspected = len(inspected[site] & {d for s, d in cases if s == site})
    ranked = sorted(sites.values(), key=lambda f: (f.tampered, f.per_record, -f.inspection_rate))
    case_list = sorted(cases | set(case_problems), key=lambda k: (case_problems[k], k))
    return {"start": start, "end": end, "sites": sites, "officers": dict(officers),
            "rules": {r: (n, false_rule[r]) for r, n in sorted(per_rule.items())},
            "findings": findings, "security": security, "ranked": ranked,
            "best_cases": [(k, case_problems[k]) for k in case_list[:3]],
            "worst_cases": [(k, case_problems[k]) for k in reversed(case_list[-3:])
                            if case_problems[k] > 0]}


def _median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f}" if xs else ""


def _ts(ms: Any) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return str(ms or "")
    try:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        return str(ms)


def _bars(values: list[tuple[str, float]], unit: str = "") -> str:
    """A horizontal bar chart as inline SVG (no script, prints anywhere)."""
    if not values:
        return ""
    top = max(v for _, v in values) or 1.0
    h = 22 * len(values) + 6
    out = [f'<svg class="chart" width="560" height="{h}" role="img">']
    for i, (label, v) in enumerate(values):
        w = int(360 * v / top)
        y = 4 + 22 * i
        out.append(f'<text x="0" y="{y + 14}" font-size="12">{html.escape(label)}</text>'
                   f'<rect x="150" y="{y}" width="{w}" height="16" fill="#4a78b5"/>'
                   f'<text x="{156 + w}" y="{y + 13}" font-size="12">{v:g}{unit}</text>')
    out.append("</svg>")
    return "".join(out)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def site_rows(fig: dict[str, Any], t: dict[str, str]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the per-site table."""
    head = [t["site"], t["records"], t["problems"], t["alerts"], t["false"], t["refused"],
            t["overdue"], t["limits"], t["ack"], t["inspection"], t["findings"], t["open"],
            t["witness"]]
    rows = [[f.site, f.records, f.problems, f.alerts, f.false_alarms, f.refused, f.overdue,
             f.limits, _median(f.ack_s), f"{100 * f.inspection_rate:.0f}%", f.findings,
             f.open_findings, t["tampered"] if f.tampered else t["ok"]]
            for f in sorted(fig["sites"].values(), key=lambda f: f.site)]
    return head, rows


def render_html(fig: dict[str, Any], lang: str) -> str:
    """The bulletin page in one language."""
    t = TEXT[lang]
    head, rows = site_rows(fig, t)
    parts = [f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head>'
             f'<meta charset="utf-8"><title>{t["title"]}</title><style>'
             "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #999;padding:3px 8px;text-align:left}"
             ".alert{color:#b00;font-weight:bold}</style></head><body>",
             f"<h1>{t['title']}</h1><p>{t['period']}: {_ts(fig['start'])} – {_ts(fig['end'])} "
             f"UTC</p>", f"<h2>{t['sites']}</h2>", _table(head, rows),
             f"<h3>{t['per_record']}</h3>",
             _bars([(f.site, round(f.per_record, 2)) for f in fig["ranked"]]),
             f"<h3>{t['inspection']}</h3>",
             _bars([(f.site, round(100 * f.inspection_rate)) for f in fig["ranked"]], "%")]
    ranked = fig["ranked"]
    parts.append(f"<h2>{t['best']} / {t['worst']}</h2><p>{t['best']}: "
                 f"{html.escape(', '.join(f.site for f in ranked[:3])) or t['none']}<br>"
                 f"{t['worst']}: "
                 f"{html.escape(', '.join(f.site for f in reversed(ranked[-3:]))) or t['none']}"
                 "</p>")
    parts.append(f"<h2>{t['best_cases']} / {t['worst_cases']}</h2>")
    parts.append(_table([t["case"], t["problems"]],
                        [[f"{s} / {d}", n] for (s, d), n in fig["best_cases"]]))
    parts.append(_table([t["case"], t["problems"]],
                        [[f"{s} / {d}", n] for (s, d), n in fig["worst_cases"]]))
    parts.append(f"<h2>{t['officers']}</h2>")
    parts.append(_table([t["officer"], t["handled"], t["ack"], t["refused"]],
                        [[o, v["handled"], _median(v["ack_s"]), v["refused"]]
                         for o, v in sorted(fig["officers"].items())]))
    parts.append(f"<h2>{t['rules']}</h2>")
    parts.append(_table([t["rule"], t["all_alerts"], t["false"], t["rate"]],
                        [[r, n, f_, f"{100 * f_ / n:.0f}%"] for r, (n, f_) in
                         fig["rules"].items()]))
    parts.append(_bars([(r, round(100 * f_ / n)) for r, (n, f_) in fig["rules"].items()], "%"))
    parts.append(f"<h2>{t['findings']}</h2>")
    parts.append(_table([t["site"], t["when"], t["by"], t["detainee"], t["finding"], t["state"],
                         t["deadline"]],
                        [[f["site"], _ts(f["ts"]), f["by"], f["detainee"], f["finding"],
                          f["state"], _ts(f["deadline"])] for f in fig["findings"]]))
    parts.append(f'<h2 class="alert">{t["security"]}</h2>' if fig["security"] else
                 f"<h2>{t['security']}</h2>")
    parts.append(_table([t["site"], t["kind"], t["detail"]],
                        [[s, k, d] for s, k, _i, d, _r in fig["security"]]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_bulletin(dsn: str, start: int, end: int, out: Path,
                   langs: tuple[str, ...] = ("en", "zh")) -> list[Path]:
    """Write bulletin-<lang>.html and the CSV tables into `out`; return the paths."""
    if end <= start:
        raise ValueError("--to must be after --from")
    fig = collect(dsn, start, end)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for lang in langs:
        p = out / f"bulletin-{lang}.html"
        p.write_text(render_html(fig, lang), encoding="utf-8")
        paths.append(p)
    t = TEXT["en"]
    tables = {
        "sites.csv": site_rows(fig, t),
        "officers.csv": (["officer", "alerts_handled", "median_ack_s", "refused"],
                         [[o, v["handled"], _median(v["ack_s"]), v["refused"]]
                          for o, v in sorted(fig["officers"].items())]),
        "rules.csv": (["rule", "alerts", "false_alarms", "false_alarm_rate"],
                      [[r, n, f_, round(f_ / n, 3)] for r, (n, f_) in fig["rules"].items()]),
        "findings.csv": (["site", "ts", "by", "detainee", "finding", "severity", "rectification",
                          "deadline"],
                         [[f["site"], f["ts"], f["by"], f["detainee"], f["finding"],
                           f["severity"], f["state"], f["deadline"]] for f in fig["findings"]]),
        "security.csv": (["site", "kind", "idx", "detail"],
                         [[s, k, i, d] for s, k, i, d, _r in fig["security"]]),
    }
    for name, (head, rows) in tables.items():
        p = out / name
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(head)
            w.writerows(rows)
        paths.append(p)
    return paths
