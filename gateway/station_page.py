"""The station page as HTML, rendered on the server: no script, it reloads itself every few seconds.

The check-out form is a page of its own, so that the reload never wipes what someone is typing. Labels are
Chinese and English; every value from a recorder, an officer or the network is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape

from gateway.bays import CHECKING, DISK_FULL, DONE, HELLO, IDLE, RECEIVING, REFUSED, BayProgress
from gateway.checkout import DELIVERED, OFFICER_FIELDS, PENDING, SUPERSEDED, Checkout
from gateway.station_view import StationView

NS = 1_000_000_000
_UNITS = ((10**9, "GB"), (10**6, "MB"), (10**3, "KB"))
_STATES = {IDLE: "空闲", HELLO: "连接", CHECKING: "校验", RECEIVING: "接收", DONE: "完成", REFUSED: "拒绝",
           DISK_FULL: "磁盘满", PENDING: "待下发", DELIVERED: "已下发", SUPERSEDED: "已取代"}
_OFFICER_LABELS = {"number": "警号 Officer number", "name": "姓名 Name", "unit_code": "单位代码 Unit code",
                   "unit_name": "单位名称 Unit name"}
_STYLE = """
body { font: 14px/1.4 system-ui, "Noto Sans CJK SC", sans-serif; margin: 1em 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
.refused, .disk-full, .error, .problem { color: #a00; }
.receiving { color: #060; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; }
form p { margin: 0.4em 0; } label { display: inline-block; width: 12em; }
"""


def render_station(view: StationView, refresh_s: int) -> str:
    sections = [_bays(view), _backlog(view), _recorders(view), _checkouts(view.checkouts), _problems(view)]
    header = (f'<h1>留痕 采集站 Station <span id="gateway">{escape(view.gateway)}</span></h1>'
              f'<p>更新 Updated {_time(view.now_ns)} · <a href="/checkout">领用登记 Check out a recorder</a> · '
              '<a href="/api/station">JSON</a></p>')
    return _document(f"留痕 {view.gateway}", header + "".join(sections),
                     f'<meta http-equiv="refresh" content="{refresh_s}">')


def render_checkout_form(devices: Iterable[str], values: Mapping[str, str], error: str | None) -> str:
    """The check-out form, filled with `values` and showing `error` when a submission was refused."""
    fields = [("device", "记录仪 Recorder", ' list="devices" autofocus')]
    fields += [(name, _OFFICER_LABELS[name], "") for name in OFFICER_FIELDS]
    inputs = "".join(f'<p><label for="{name}">{label}</label><input id="{name}" name="{name}" required{extra} '
                     f'value="{escape(values.get(name, ""))}"></p>' for name, label, extra in fields)
    options = "".join(f'<option value="{escape(d)}">' for d in sorted(set(devices)))
    refusal = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    body = (f"<h1>领用登记 Check out a recorder</h1>{refusal}"
            f'<form method="post" action="/checkout">{inputs}<datalist id="devices">{options}</datalist>'
            '<p><button type="submit">签发 Sign and keep for the dock</button> <a href="/">返回 Back</a></p></form>'
            "<p>The assignment is signed by this gateway now and handed to the recorder when it next docks.</p>")
    return _document("留痕 领用 Check-out", body)


def _document(title: str, body: str, head: str = "") -> str:
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">{head}<title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def _table(section: str, title: str, headings: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headings)
    body = "".join(rows) or f'<tr class="none"><td colspan="{len(headings)}">无 None</td></tr>'
    return (f'<section id="{section}"><h2>{title}</h2><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></section>")


def _cells(values: Mapping[str, str]) -> str:
    """Cells named by class (already escaped values)."""
    return "".join(f'<td class="{name}">{value}</td>' for name, value in values.items())


def _bays(view: StationView) -> str:
    return _table("bays", "坞位 Bays", ["坞位 Bay", "记录仪 Recorder", "警员 Officer", "状态 State", "文件 Files",
                                       "数据 Bytes", "速率 Rate", "电量 Battery", "错误 Last error"],
                  [_bay_row(view, bay) for bay in view.bays])


def _bay_row(view: StationView, bay: BayProgress) -> str:
    recorder = view.recorder(bay.device)
    progress = (f' <progress value="{bay.bytes_done}" max="{bay.bytes_total}"></progress>'
                if bay.bytes_total else "")
    cells = _cells({
        "bay": escape(bay.bay), "device": _text(bay.device), "officer": _officer(view.officer(bay.device)),
        "state": _state(bay.state), "files": f"{bay.files_done} / {bay.files_total}",
        "bytes": f"{_bytes(bay.bytes_done)} / {_bytes(bay.bytes_total)}{progress}",
        "rate": f"{_bytes(bay.rate_bytes_per_s)}/s" if bay.rate_bytes_per_s else "",
        "battery": _battery(recorder.battery_percent, recorder.charging) if recorder else "",
        "error": _text(bay.last_error)})
    return f'<tr data-bay="{escape(bay.bay)}" class="{escape(bay.state)}">{cells}</tr>'


def _backlog(view: StationView) -> str:
    b = view.backlog
    oldest = f"{_time(b.oldest_ns)} ({_age(view.now_ns - b.oldest_ns)})" if b.oldest_ns is not None else "—"
    items = [("backlog-count", "待上传 Segments waiting", str(b.count)),
             ("backlog-bytes", "数据 Bytes", _bytes(b.media_bytes)),
             ("backlog-oldest", "最早 Oldest", oldest),
             ("backlog-flagged", "校验异常 Flagged", str(b.flagged)),
             ("backlog-held", "待人工处理 Held back for a person", str(b.held_back)),
             ("upload-error", "上传错误 Last upload error", _text(view.upload_error))]
    rows = "".join(f'<dt>{label}</dt><dd id="{key}">{value}</dd>' for key, label, value in items)
    return f'<section id="backlog"><h2>上传积压 Backlog to the server</h2><dl>{rows}</dl></section>'


def _recorders(view: StationView) -> str:
    rows = []
    for r in view.recorders:
        online = {True: "在线 online", False: "离线 offline", None: ""}[r.online]
        cells = _cells({
            "device": escape(r.device), "online": online, "state": _text(r.state),
            "battery": _battery(r.battery_percent, r.charging),
            "storage": _bytes(r.storage_free_bytes) if r.storage_free_bytes is not None else "",
            "seen": _age(view.now_ns - r.last_seen_ns) if r.last_seen_ns is not None else "",
            "officer": _officer(view.officer(r.device)),
            "event": f"{escape(r.last_event)} #{r.last_event_n}" if r.last_event else ""})
        rows.append(f'<tr data-device="{escape(r.device)}">{cells}</tr>')
    return _table("recorders", "记录仪 Recorders", ["记录仪 Recorder", "在线 Online", "状态 State", "电量 Battery",
                                                  "剩余空间 Storage free", "最近 Last seen", "警员 Officer",
                                                  "最近事件 Last event"], rows)


def _checkouts(checkouts: list[Checkout]) -> str:
    rows = [f'<tr data-ref="{c.ref}">' + _cells({
        "issued": _time(c.issued_ns), "device": escape(c.device), "number": escape(c.officer.number),
        "name": escape(c.officer.name), "unit": f"{escape(c.officer.unit_name)} ({escape(c.officer.unit_code)})",
        "status": _state(c.status)}) + "</tr>" for c in checkouts]
    return _table("checkouts", "领用 Check-outs", ["签发 Issued", "记录仪 Recorder", "警号 Officer number",
                                                 "姓名 Name", "单位 Unit", "状态 Status"], rows)


def _problems(view: StationView) -> str:
    rows = ['<tr class="problem">' + _cells({
        "at": _time(p.at_ns), "source": escape(p.source), "device": _text(p.device), "code": escape(p.code),
        "message": escape(p.message)}) + "</tr>" for p in view.problems]
    return _table("problems", "拒绝与错误 Refusals and errors", ["时间 Time", "来源 Where", "记录仪 Recorder",
                                                              "代码 Code", "说明 Message"], rows)


def _officer(checkout: Checkout | None) -> str:
    if checkout is None:
        return ""
    waiting = " (待下发 pending)" if checkout.status == PENDING else ""
    return f"{escape(checkout.officer.number)} {escape(checkout.officer.name)}{waiting}"


def _state(state: str) -> str:
    label = _STATES.get(state)
    return f"{label} {escape(state)}" if label else escape(state)


def _battery(percent: int | None, charging: bool | None) -> str:
    if percent is None:
        return ""
    return f"{percent}%{' ⚡' if charging else ''}"


def _text(value: str | None) -> str:
    return escape(value) if value else ""


def _bytes(count: int) -> str:
    for scale, unit in _UNITS:
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _time(ns: int) -> str:
    """Station time, as the people at the station read their clocks."""
    return datetime.fromtimestamp(ns / NS).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _age(ns: int) -> str:
    seconds = max(0, ns // NS)
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
