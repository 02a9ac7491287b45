"""The search mix of bench/server.py: what officers and supervisors ask GET /api/segments, built from a sample of
the synthetic index (bench/server_data.py) so every query names real officers, recorders, days, places,
markers and cases, and timed one request at a time over HTTP against a running `liuhen server run`."""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import requests

from bench.server_data import DAY, PASSWORD, Samples

# (kind, who asks, what): each kind gets the same number of queries, shuffled together.
KINDS = {
    "officer_range": "officer: own officer number, a 7-day range",
    "officer_newest": "officer: everything they may see, newest first (no filter)",
    "device_day": "supervisor: one recorder, one day",
    "unit_newest": "supervisor: the unit's footage, newest first (no filter)",
    "unit_range": "supervisor: the unit's footage of one day",
    "box_range": "supervisor: a 1 x 1 km box, a 7-day range",
    "near_range": "supervisor: 300 m-1 km around a point, a 7-day range",
    "marker": "supervisor: a marker kind within 30 days",
    "case": "officer or supervisor: a case they handle",
    "box_only": "supervisor: a 1 x 1 km box, no time range",
    "near_only": "supervisor: 300 m-1 km around a point, no time range",
}
PLACE_ONLY = ("box_only", "near_only")


@dataclass(frozen=True)
class Query:
    kind: str
    user: str
    params: dict[str, str]


def _deg(e7: int) -> str:
    return f"{e7 / 1e7:.7f}"


def make_queries(samples: Samples, per_kind: int, seed: int) -> list[Query]:
    rng = random.Random(seed)
    out: list[Query] = []
    for kind in KINDS:
        for _ in range(per_kind):
            unit = rng.choice(samples.units)
            sup = f"sup-{unit}"
            officer = rng.choice(samples.officers)
            t, lat, lon = rng.choice(samples.points[unit])
            week = {"from": str(t - 3 * DAY - DAY // 2), "to": str(t + 3 * DAY + DAY // 2)}
            box = {"box": f"{_deg(lat - 45_000)},{_deg(lon - 60_000)},{_deg(lat + 45_000)},{_deg(lon + 60_000)}"}
            near = {"near": f"{_deg(lat)},{_deg(lon)},{rng.choice((300, 500, 1000))}"}
            if kind == "officer_range":
                ot = rng.choice(samples.officer_times[officer])
                q = Query(kind, f"o{officer}", {"officer": officer, "from": str(ot - 3 * DAY), "to": str(ot + 4 * DAY)})
            elif kind == "officer_newest":
                q = Query(kind, f"o{officer}", {})
            elif kind == "device_day":
                device, day = rng.choice(samples.device_days[unit])
                q = Query(kind, sup, {"device": device, "from": str(day), "to": str(day + DAY - 1)})
            elif kind == "unit_newest":
                q = Query(kind, sup, {})
            elif kind == "unit_range":
                day = t - t % DAY
                q = Query(kind, sup, {"from": str(day), "to": str(day + DAY - 1)})
            elif kind == "box_range":
                q = Query(kind, sup, {**box, **week})
            elif kind == "near_range":
                q = Query(kind, sup, {**near, **week})
            elif kind == "marker":
                mk, mt = rng.choice(samples.markers[unit])
                q = Query(kind, sup, {"marker": mk, "from": str(mt - 15 * DAY), "to": str(mt + 15 * DAY)})
            elif kind == "case":
                mine = samples.officer_cases.get(officer)
                if mine and rng.random() < 0.5:
                    q = Query(kind, f"o{officer}", {"case": rng.choice(mine)})
                else:
                    q = Query(kind, sup, {"case": rng.choice(samples.unit_cases[unit])})
            elif kind == "box_only":
                q = Query(kind, sup, box)
            else:
                q = Query(kind, sup, near)
            out.append(q)
    rng.shuffle(out)
    return out


def sign_in_all(url: str, usernames: set[str]) -> dict[str, requests.Session]:
    sessions = {}
    for name in sorted(usernames):
        session = requests.Session()
        r = session.post(f"{url}/api/session", json={"username": name, "password": PASSWORD}, timeout=30)
        r.raise_for_status()
        session.headers["Authorization"] = f"Bearer {r.json()['token']}"
        sessions[name] = session
    return sessions


@dataclass
class Timings:
    ms: dict[str, list[float]]
    found: dict[str, list[int]]
    more: dict[str, int]  # answers with a `next` cursor


def run_queries(url: str, queries: list[Query], warmup: list[Query]) -> Timings:
    """Each query once, one at a time (keep-alive sessions); the warm-up queries first, not counted."""
    sessions = sign_in_all(url, {q.user for q in queries + warmup})
    timings = Timings(defaultdict(list), defaultdict(list), defaultdict(int))
    for counted, batch in ((False, warmup), (True, queries)):
        for q in batch:
            t0 = time.perf_counter()
            r = sessions[q.user].get(f"{url}/api/segments", params=q.params, timeout=120)
            body = r.content
            dt = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                raise AssertionError(f"{q}: {r.status_code} {body[:300]!r}")
            if counted:
                answer: dict[str, Any] = r.json()
                timings.ms[q.kind].append(dt)
                timings.found[q.kind].append(len(answer["segments"]))
                timings.more[q.kind] += answer["next"] is not None
    return timings


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def p50(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.5 * len(ordered)) - 1)]
