"""The desk's words in English and Simplified Chinese, and times in the site's time zone."""

import datetime as dt
from zoneinfo import ZoneInfo

LANGS = {"en": "en", "zh": "zh-CN"}  # session choice -> <html lang>

_EN = {
    "title": "Custody desk", "floor": "Floor", "alerts": "Alert queue", "detainees": "Detainees",
    "record": "Record", "approvals": "Approvals", "inspection": "Inspection",
    "signin": "Sign in", "signout": "Sign out", "user": "User", "password": "Password",
    "signin_failed": ("Sign-in refused: wrong user or password, or the account or this "
                      "computer is locked for a few minutes after too many failures."),
    "officers": "Officers", "detainee": "Detainee", "inside": "Inside", "nobody": "nobody",
    "camera": "Camera", "live": "live", "not_live": "NOT LIVE", "no_camera": "none",
    "door": "Door", "unregistered": "unregistered band(s)", "room": "Room",
    "role_visitor": "visitor", "role_lawyer": "lawyer", "visiting": "for",
    "severity": "Severity", "rule": "Rule", "meaning": "Meaning", "age": "Age",
    "raised": "Raised", "escalations": "Escalations", "state": "State", "actions": "Actions",
    "acknowledge": "Acknowledge", "resolve": "Resolve", "false_alarm": "Mark false alarm",
    "action_taken": "What was done", "reason": "Reason (required)", "note": "Note",
    "acked_by": "acknowledged by {who} after {dur}", "no_alerts": "No open alerts.",
    "recent_closed": "Recently closed", "custody_type": "Custody type",
    "time_used": "Time used / limit", "steps": "Steps", "observation": "Observation",
    "last_welfare": "Last verified welfare check", "next_due": "Next due", "overdue": "OVERDUE",
    "none_yet": "none yet", "no_detainees": "Nobody in custody.", "case": "Case",
    "status": "Status", "print": "Print", "choose_detainee": "Choose a detainee",
    "no_record": "No such detainee.", "time": "Time", "event": "Event",
    "approve_disposition": "Approve disposition", "approve_temp_exit": "Approve temporary exit",
    "approve_extension": "Approve extension", "disposition": "Disposition",
    "return_by": "Return by (minutes from now)", "hours": "Hours",
    "no_approvals": "Your role gives no approvals.", "exit_waiting": "at the exit",
    "findings": "Findings", "record_finding": "Record finding", "finding": "Finding",
    "subject": "Alert or detainee", "refused_actions": "Refused actions",
    "false_alarm_stats": "False alarms by rule", "feed": "Alert activity",
    "reconnecting": "Connection lost: reconnecting...", "done": "Done", "error": "Refused",
    "by": "by", "language": "中文", "steps_registered": "registered",
    "steps_searched": "searched", "steps_information": "information",
    "steps_interview": "interview", "steps_belongings": "belongings",
    "steps_disposition": "disposition", "in-custody": "in custody", "exited": "left custody",
    "temporary-exit": "temporarily out", "acknowledged": "acknowledged", "open": "open",
    "critical": "critical", "warning": "warning", "info": "info", "signed_in_as": "Signed in as",
    "missing": "missing",
    "view_evidence": "View evidence", "report": "Compliance report",
    "evidence_journaled": "Masked clip of {evidence}; this view is journaled (entry {idx}) "
                          "as {user}.",
    "evidence_still": "Still frame from the verified clip (this browser cannot play its "
                      "video format)",
    "download_clip": "Download the clip",
}

_ZH = {
    "title": "看守值班台", "floor": "楼层", "alerts": "告警队列", "detainees": "在押人员",
    "record": "档案", "approvals": "审批", "inspection": "监督检查",
    "signin": "登录", "signout": "退出", "user": "用户", "password": "密码",
    "signin_failed": "登录被拒绝：用户或密码错误，或因失败次数过多，账户或本机被锁定几分钟。",
    "officers": "民警", "detainee": "被管控人员", "inside": "室内", "nobody": "无人",
    "camera": "摄像头", "live": "在线", "not_live": "离线", "no_camera": "无",
    "door": "门", "unregistered": "未登记手环", "room": "房间",
    "role_visitor": "访客", "role_lawyer": "律师", "visiting": "会见",
    "severity": "级别", "rule": "规则", "meaning": "含义", "age": "持续",
    "raised": "发生时间", "escalations": "升级次数", "state": "状态", "actions": "处置",
    "acknowledge": "确认", "resolve": "解除", "false_alarm": "标记误报",
    "action_taken": "已采取的措施", "reason": "原因（必填）", "note": "备注",
    "acked_by": "{who} 于 {dur} 后确认", "no_alerts": "没有未处理的告警。",
    "recent_closed": "最近关闭", "custody_type": "管控类型",
    "time_used": "已用时间 / 法定时限", "steps": "流程", "observation": "看护等级",
    "last_welfare": "最近一次核实的巡查", "next_due": "下次巡查", "overdue": "已逾期",
    "none_yet": "尚无", "no_detainees": "目前无在押人员。", "case": "案件",
    "status": "状态", "print": "打印", "choose_detainee": "选择人员",
    "no_record": "没有该人员。", "time": "时间", "event": "事件",
    "approve_disposition": "批准处理决定", "approve_temp_exit": "批准临时离开",
    "approve_extension": "批准延长", "disposition": "处理决定",
    "return_by": "返回时限（分钟后）", "hours": "小时",
    "no_approvals": "您的角色无审批权限。", "exit_waiting": "在出口",
    "findings": "检查发现", "record_finding": "记录发现", "finding": "发现",
    "subject": "告警或人员", "refused_actions": "被拒绝的操作",
    "false_alarm_stats": "各规则误报数", "feed": "告警动态",
    "reconnecting": "连接中断，正在重连……", "done": "已完成", "error": "被拒绝",
    "by": "由", "language": "English", "steps_registered": "登记",
    "steps_searched": "安全检查", "steps_information": "信息采集",
    "steps_interview": "询问", "steps_belongings": "随身物品",
    "steps_disposition": "处理决定", "in-custody": "在押", "exited": "已离开",
    "temporary-exit": "临时离开", "acknowledged": "已确认", "open": "未处理",
    "critical": "严重", "warning": "警告", "info": "提示", "signed_in_as": "当前用户",
    "missing": "缺",
    "view_evidence": "查看证据视频", "report": "合规报告",
    "evidence_journaled": "{evidence} 的遮蔽视频；本次查看已记入日志（第 {idx} 条），"
                          "查看人 {user}。",
    "evidence_still": "取自已校验视频的静帧（浏览器无法播放该视频格式）",
    "download_clip": "下载视频",
}

TEXT = {"en": _EN, "zh": _ZH}

# What each rule means, for people who did not write it.
RULES = {
    "brought-straight-in": ("A detainee was seen before registration, or registered late.",
                            "人员在登记前被发现，或登记过晚。"),
    "search-first": ("A detainee entered a room before a completed safety search.",
                     "人员在完成安全检查前进入其他房间。"),
    "real-search": ("The search had too few officers, no same-sex officer, or was too short.",
                    "安全检查民警不足、无同性别民警或时间过短。"),
    "never-alone": ("A detainee is without an officer outside a holding room.",
                    "人员在候问室外无民警陪同。"),
    "holding-watch": ("A detainee is alone in a holding room while its camera is not live.",
                      "人员独处候问室且摄像头不在线。"),
    "interview": ("An interview with fewer than two officers, or outside an interview room.",
                  "询问民警少于两人，或不在询问室进行。"),
    "door-open": ("An occupied cell's door is open with no officer inside.",
                  "有人羁押室的门开着且无民警在内。"),
    "recording-gap": ("An occupied room's camera or recorder stopped reporting.",
                      "有人房间的摄像头或录像中断。"),
    "co-suspects": ("Two detainees of one case are in the same room.",
                    "同案人员处于同一房间。"),
    "welfare-check": ("A sensor-verified welfare visit is due or overdue.",
                      "经传感器核实的巡查即将到期或已逾期。"),
    "time-limit": ("Time in custody is nearing or past the legal limit.",
                   "羁押时间接近或超过法定时限。"),
    "exit": ("A detainee left without an approved disposition or temporary-exit approval.",
             "人员未经批准离开。"),
    "temporary-exit-overdue": ("A detainee on temporary exit is not back in time.",
                               "临时离开人员未按时返回。"),
    "property": ("Belongings not logged in time, or case property out past its due time.",
                 "随身物品未及时登记，或涉案财物逾期未归还。"),
    "fall": ("A fall was detected.", "检测到摔倒。"),
    "fight": ("A fight was detected.", "检测到打斗。"),
    "lying-still": ("A person has been lying still too long.", "有人长时间躺卧不动。"),
    "camera-tamper": ("A camera is covered, blurred or moved.", "摄像头被遮挡、模糊或移动。"),
    "device-offline": ("A room node stopped reporting.", "房间节点离线。"),
    "reader-fault": ("A wristband reader reports a fault.", "手环读卡器故障。"),
    "missing-events": ("Events from a node are missing (sequence gap).",
                       "节点事件缺失（序号断档）。"),
    "unknown-band": ("An unknown wristband was read.", "读取到未知手环。"),
    "panic": ("A panic button was pressed.", "紧急按钮被按下。"),
    "security": ("A message was refused as a security event.", "消息因安全原因被拒绝。"),
    "staff-throttled": ("A staff account sent far more requests than a person can: throttled "
                        "(a script, or a stolen password?).",
                        "某工作人员账号发送的请求远超人工操作：已限流（脚本或密码被盗？）。"),
}


def t(lang: str, key: str) -> str:
    """The word for `key` in `lang` (English when missing)."""
    return TEXT.get(lang, _EN).get(key) or _EN.get(key, key)


def meaning(lang: str, rule: str) -> str:
    """A rule's plain-language meaning."""
    pair = RULES.get(rule)
    if pair is None:
        return rule
    return pair[1] if lang == "zh" else pair[0]


def fmt_time(ms: int | None, tz: ZoneInfo, with_date: bool = False) -> str:
    """Custody ms as wall-clock text in the site's zone."""
    if ms is None:
        return "-"
    d = dt.datetime.fromtimestamp(ms / 1000, tz)
    return d.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def fmt_dur(ms: int) -> str:
    """A duration as 1h02m, 5m03s or 12s."""
    s = max(0, ms // 1000)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
