"""The synthetic index of bench/server.py: a city's body-worn recorders over 183 days, bulk-loaded into fresh
indexes (SQLite, PostgreSQL) made by server.database.upgrade, for the search and log-proof figures.

What is in it (for 1 M segments; smaller runs scale devices and units down and keep the density):
- 400 recorders in 20 units (police stations), each unit's recorders working in its own precinct of one city
  (a 5 x 4 grid over 33 x 34 km), 30 officers per unit; 90 % of recorder-days in service, one 8-hour shift each
  (three shifts a day), checked out to one officer of the unit for the shift;
- per shift a boot record and a few incidents recorded in 10 s segments (about 14 segments a shift), each
  incident a continuous GNSS track (walking or driving, one point a second); 5 % of segments have no fix;
- a marker on 5 % of segments (event, arrest, use-of-force, pursuit), 0.1 % quarantined;
- cases: 2 % of incidents linked to a case, a fifth of them joining an open case of any unit (joint cases);
  handled by the recording officers and their supervisors;
- users: every officer, one supervisor per unit, an administrator, all with one password (one argon2 hash);
- the recorders and one gateway per unit enrolled (server.enrollment), as the server's own admin command does.

Every manifest is real: built, checked and signed with its recorder's key (Ed25519) in an unbroken chain per
recorder, so the search reads real track points from the stored envelopes. Each row's envelope is appended to
the transparency log in the same transaction as the row (one transaction per ~10 k rows), as ingest does, so
the log holds a million entries too. The server receipt column holds a real signed receipt's bytes repeated
(the right size; search never reads it); dock receipts are not stored (dock_receipt_id is NULL).

Manifests are made by two forked worker processes (recorders split between them, each walking the days in
order, so every chain stays unbroken) while this process loads each batch into every backend in turn: SQLite
with executemany, PostgreSQL with COPY.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import argon2
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import insert, select, text

from protocol import layout, log_records, manifest, receipts, signatures
from server.enrollment import enroll
from server.schema import case_handlers, case_segments, cases, log_head, segment_markers, users
from server.services import Services

SECOND = 10**9
DAY = 86_400 * SECOND
DAY0 = 1_748_736_000 * SECOND  # 2025-06-01T00:00:00Z
SEGMENT_S = 10
SHIFT_S = 8 * 3600
PASSWORD = "benchmark password 2025"
# The city: 39.75-40.05 N, 116.20-116.60 E, cut into a grid of precincts (5 columns, 4 rows at 20 units).
CITY_LAT, CITY_LON = (39.75, 40.05), (116.20, 116.60)
M_PER_DEG_LAT = 111_320.0
MARKER_KINDS = (("event", 0.80), ("arrest", 0.08), ("use-of-force", 0.07), ("pursuit", 0.05))
P_IN_SERVICE, P_NO_FIX, P_MARKER, P_QUARANTINED = 0.90, 0.05, 0.05, 0.001
P_CASE, P_JOIN = 0.02, 0.2
MANIFEST_KIND = log_records.ENTRY_KINDS[manifest.TYPE]
CODECS = ["avc1.640028", "mp4a.40.2"]

# Column order of segments rows as generated (id and log_index are filled in by the loader).
COLUMNS = ("id", "manifest", "device", "seq", "kind", "start_ns", "end_ns", "officer", "unit", "min_lat_e7",
           "max_lat_e7", "min_lon_e7", "max_lon_e7", "markers", "media_name", "media_sha256", "media_size",
           "status", "findings", "gateway", "received_ns", "log_index", "envelope", "server_receipt")
ID, LOG_INDEX, ENVELOPE, SERVER_RECEIPT = (COLUMNS.index(c) for c in ("id", "log_index", "envelope",
                                                                       "server_receipt"))


@dataclass(frozen=True)
class Shape:
    rows: int
    devices: int
    units: int
    officers_per_unit: int = 30
    days: int = 183

    @classmethod
    def for_rows(cls, rows: int) -> Shape:
        scale = rows / 1_000_000
        return cls(rows, devices=max(20, round(400 * scale)), units=max(2, round(20 * scale)))

    def unit(self, device: int) -> str:
        return f"U{device % self.units + 1:02d}"

    def device(self, device: int) -> str:
        return f"REC-{device + 1:04d}"

    def officers(self, unit: str) -> list[str]:
        u = int(unit[1:])
        return [f"{u:02d}{k + 1:04d}" for k in range(self.officers_per_unit)]

    def precinct(self, unit: str) -> tuple[float, float, float, float]:
        """(min_lat, min_lon, max_lat, max_lon) of the unit's precinct."""
        cols = max(1, round(math.sqrt(self.units * 1.25)))
        rows = math.ceil(self.units / cols)
        u = int(unit[1:]) - 1
        r, c = divmod(u, cols)
        dlat, dlon = (CITY_LAT[1] - CITY_LAT[0]) / rows, (CITY_LON[1] - CITY_LON[0]) / cols
        lat0, lon0 = CITY_LAT[0] + r * dlat, CITY_LON[0] + c * dlon
        return lat0, lon0, lat0 + dlat, lon0 + dlon


def device_key(device: int) -> ed25519.Ed25519PrivateKey:
    """Recorder keys are derived from the recorder number, so every process makes the same ones."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"liuhen-bench-rec-%d" % device).digest())


def gateway_key(unit: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"liuhen-bench-gw-" + unit.encode()).digest())


# -- the plan: who records what, when ------------------------------------------------------------------------


@dataclass
class Shift:
    day: int
    device: int
    officer: str
    start_ns: int
    incidents: list[int]  # lengths in segments

    @property
    def rows(self) -> int:
        return 1 + sum(self.incidents)  # the boot record, then the segments


def make_plan(shape: Shape, seed: int) -> list[Shift]:
    """Every recorder's shifts in (day, recorder) order, with exactly shape.rows rows in all."""
    rng = random.Random(seed)
    shifts = []
    for day in range(shape.days):
        for device in range(shape.devices):
            if rng.random() >= P_IN_SERVICE:
                continue
            unit = shape.unit(device)
            start = DAY0 + day * DAY + (6 * 3600 + (device % 3) * SHIFT_S + rng.randrange(-900, 900)) * SECOND
            shifts.append(Shift(day, device, rng.choice(shape.officers(unit)), start,
                                [0] * min(8, 1 + int(rng.expovariate(1 / 1.5)))))
    incidents = [(s, i) for s in shifts for i in range(len(s.incidents))]
    segments_wanted = shape.rows - len(shifts)
    if segments_wanted < len(incidents):
        raise ValueError(f"{shape.rows} rows are too few for {shape.devices} recorders over {shape.days} days")
    mean = segments_wanted / len(incidents)
    total = 0
    for s, i in incidents:
        s.incidents[i] = min(60, 1 + int(rng.expovariate(1 / max(mean - 1, 0.01))))
        total += s.incidents[i]
    while total != segments_wanted:  # nudge random incidents until the count is exact
        s, i = incidents[rng.randrange(len(incidents))]
        if total < segments_wanted and s.incidents[i] < 60:
            s.incidents[i] += 1
            total += 1
        elif total > segments_wanted and s.incidents[i] > 1:
            s.incidents[i] -= 1
            total -= 1
    return shifts


def chunks_of(plan: list[Shift], days_per_chunk: int) -> list[list[Shift]]:
    out: dict[int, list[Shift]] = defaultdict(list)
    for s in plan:
        out[s.day // days_per_chunk].append(s)
    return [out[k] for k in sorted(out)]


# -- manifests (in the worker processes) ---------------------------------------------------------------------


@dataclass
class _Chain:
    signer: signatures.KeySigner
    seq: int = 0
    prev: str = ""


@dataclass
class Made:
    """One shift's rows as a worker made them: segments rows (COLUMNS order, id and log_index None) and per
    row its incident number (-1 for the boot record), markers [(t_ns, kind)] and one track point or None."""

    day: int
    device: int
    rows: list[list[Any]] = field(default_factory=list)
    incident: list[int] = field(default_factory=list)
    markers: list[list[tuple[int, str]]] = field(default_factory=list)
    point: list[tuple[int, int] | None] = field(default_factory=list)


class ShiftMaker:
    def __init__(self, shape: Shape, seed: int, receipt: bytes) -> None:
        self.shape, self.seed, self.receipt = shape, seed, receipt
        self.chains: dict[int, _Chain] = {}

    def _chain(self, device: int) -> _Chain:
        chain = self.chains.get(device)
        if chain is None:
            chain = self.chains[device] = _Chain(signatures.KeySigner(device_key(device)),
                                                 prev=manifest.genesis(self.shape.device(device)).hex())
        return chain

    def make(self, shift: Shift) -> Made:
        shape = self.shape
        rng = random.Random(self.seed * 1_000_003 + shift.device * 1_009 + shift.day)
        chain = self._chain(shift.device)
        device, unit = shape.device(shift.device), shape.unit(shift.device)
        session = rng.randbytes(16).hex()
        assignment = {"officer": shift.officer, "ref": hashlib.sha256(f"{shift.officer}/{shift.day}".encode())
                      .hexdigest()}
        received = shift.start_ns + (SHIFT_S + 1800) * SECOND
        made = Made(shift.day, shift.device)

        def add(kind: str, start: int, media: dict[str, Any] | None, points: list[dict[str, int]],
                marks: list[dict[str, Any]], detail: dict[str, Any], incident: int) -> None:
            seconds = SEGMENT_S if media else 0
            mono = start - shift.start_ns
            m = manifest.build({
                "device": device, "key": chain.signer.keyid, "session": session, "seq": chain.seq,
                "prev": chain.prev, "kind": kind,
                "time": {"start_ns": start, "end_ns": start + seconds * SECOND, "source": "gnss",
                         "mono_start_ns": mono, "mono_end_ns": mono + seconds * SECOND},
                "media": media,
                "track": {"points": points, "none_reason": None if points else ("no-fix" if media else "record-only")},
                "markers": marks, "assignment": assignment, "firmware": "1.4.2", "prerecord": False, "detail": detail,
            })
            envelope = signatures.seal(chain.signer, manifest.TYPE, m.payload)
            lats, lons = [p["lat_e7"] for p in points], [p["lon_e7"] for p in points]
            quarantined = media is not None and rng.random() < P_QUARANTINED
            findings = [{"code": "chain.broken_link", "message": "prev does not match the stored manifest at seq-1"}]
            made.rows.append([
                None, m.hash.hex(), device, chain.seq, kind, start, start + seconds * SECOND, shift.officer, unit,
                min(lats, default=None), max(lats, default=None), min(lons, default=None), max(lons, default=None),
                len(marks), media["name"] if media else None, media["sha256"] if media else None,
                media["size"] if media else None, "quarantined" if quarantined else "stored",
                json.dumps(findings if quarantined else []), f"GW-{unit}", received, None, envelope, self.receipt])
            made.incident.append(incident)
            made.markers.append([(k["t_ns"], k["kind"]) for k in marks])
            made.point.append((points[len(points) // 2]["lat_e7"], points[len(points) // 2]["lon_e7"]) if points
                              else None)
            chain.seq, chain.prev = chain.seq + 1, m.hash.hex()

        add(manifest.BOOT, shift.start_ns, None, [], [], {"rtc_valid": True, "reason": "power-on"}, -1)
        min_lat, min_lon, max_lat, max_lon = shape.precinct(unit)
        slot = SHIFT_S // len(shift.incidents)
        for n, length in enumerate(shift.incidents):
            start = shift.start_ns + (n * slot + rng.randrange(60, max(61, slot - length * SEGMENT_S))) * SECOND
            lat, lon = rng.uniform(min_lat, max_lat), rng.uniform(min_lon, max_lon)
            heading = rng.uniform(0, 2 * math.pi)
            speed = rng.uniform(0.8, 2.0) if rng.random() < 0.5 else rng.uniform(5.0, 16.0)
            for k in range(length):
                t = start + k * SEGMENT_S * SECOND
                points = []
                for i in range(SEGMENT_S):
                    heading += rng.gauss(0, 0.15)
                    lat += speed * math.cos(heading) / M_PER_DEG_LAT
                    lon += speed * math.sin(heading) / (M_PER_DEG_LAT * math.cos(math.radians(lat)))
                    if not (min_lat < lat < max_lat and min_lon < lon < max_lon):
                        heading += math.pi  # turn back into the precinct
                    points.append({"t_ns": t + i * SECOND, "lat_e7": round(lat * 1e7), "lon_e7": round(lon * 1e7),
                                   "fix": 1, "hdop_c": rng.randrange(70, 160)})
                if rng.random() < P_NO_FIX:
                    points = []
                marks = []
                if rng.random() < P_MARKER:
                    r, kind = rng.random(), MARKER_KINDS[-1][0]
                    for name, p in MARKER_KINDS:
                        if r < p:
                            kind = name
                            break
                        r -= p
                    marks = [{"t_ns": t + rng.randrange(SEGMENT_S) * SECOND, "kind": kind}]
                media = {"name": layout.media_name(chain.seq, "mp4"), "sha256": rng.randbytes(32).hex(),
                         "size": 4_500_000 + rng.randrange(1_000_000), "container": "mp4-fragmented",
                         "codecs": CODECS, "duration_ns": SEGMENT_S * SECOND, "frames": SEGMENT_S * 30}
                add(manifest.SEGMENT, t, media, points, marks, {}, n)
        return made


def _worker(shape: Shape, seed: int, receipt: bytes, chunks: list[list[Shift]], worker: int, workers: int,
            out: Any) -> None:
    maker = ShiftMaker(shape, seed, receipt)
    for chunk in chunks:
        out.put([maker.make(s) for s in chunk if s.device % workers == worker])
    out.put(None)


def made_chunks(shape: Shape, seed: int, receipt: bytes, chunks: list[list[Shift]], workers: int
                ) -> Iterator[list[Made]]:
    """Each chunk's shifts made by `workers` forked processes, merged back into (day, recorder) order."""
    ctx = multiprocessing.get_context("fork")
    queues = [ctx.Queue(maxsize=2) for _ in range(workers)]
    procs = [ctx.Process(target=_worker, args=(shape, seed, receipt, chunks, w, workers, queues[w]), daemon=True)
             for w in range(workers)]
    for p in procs:
        p.start()
    try:
        for _ in chunks:
            parts = [q.get() for q in queues]
            yield sorted((m for part in parts for m in part), key=lambda m: (m.day, m.device))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()


# -- what the queries need to know about the data -------------------------------------------------------------


@dataclass
class Samples:
    """A sample of the footage of the units and officers the queries sign in as."""

    units: list[str]
    officers: list[str]
    # unit -> its recorders; (start_ns, lat_e7, lon_e7) of segments; (recorder, day start) of shifts; (kind, t_ns)
    devices: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    points: dict[str, list[tuple[int, int, int]]] = field(default_factory=lambda: defaultdict(list))
    device_days: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    markers: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    officer_times: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # officer -> start_ns
    unit_cases: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    officer_cases: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    first_ns: int = 0
    last_ns: int = 0


# -- the loaders ------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    rows: list[list[Any]]
    markers: list[dict[str, Any]]
    cases: list[dict[str, Any]]
    handlers: list[dict[str, Any]]
    links: list[dict[str, Any]]


class Loader:
    """Loads batches into one backend's index; times the log appends and the row inserts apart."""

    def __init__(self, name: str, services: Services) -> None:
        self.name, self.s = name, services
        self.is_pg = not services.db.is_sqlite
        self.log_s = self.rows_s = 0.0
        self.entries = 0

    def prepare(self, shape: Shape, user_rows: list[dict[str, Any]]) -> None:
        s = self.s
        with s.db.write() as conn:
            for d in range(shape.devices):
                enroll(conn, s, role="device", owner=shape.device(d), public_key=device_key(d).public_key(),
                       actor="admin-cli", unit=shape.unit(d), label=f"locker {d + 1}")
            for u in sorted({shape.unit(d) for d in range(shape.devices)}):
                enroll(conn, s, role="gateway", owner=f"GW-{u}", public_key=gateway_key(u).public_key(),
                       actor="admin-cli", label=f"station {u}")
            conn.execute(insert(users), user_rows)

    def load(self, batch: Batch, now_ns: int) -> None:
        s = self.s
        with s.db.write() as conn:
            t0 = time.perf_counter()
            first = s.log.append(conn, [(MANIFEST_KIND, r[ENVELOPE]) for r in batch.rows], now_ns)
            t1 = time.perf_counter()
            for i, r in enumerate(batch.rows):
                r[LOG_INDEX] = first + i
            if self.is_pg:
                raw = conn.connection.driver_connection
                with raw.cursor() as cur, cur.copy(f"COPY segments ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for r in batch.rows:
                        copy.write_row(r)
            else:
                conn.exec_driver_sql(f"INSERT INTO segments ({', '.join(COLUMNS)}) VALUES "
                                     f"({', '.join('?' * len(COLUMNS))})", [tuple(r) for r in batch.rows])
            for table, values in ((segment_markers, batch.markers), (cases, batch.cases),
                                  (case_handlers, batch.handlers), (case_segments, batch.links)):
                if values:
                    conn.execute(insert(table), values)
            self.log_s += t1 - t0
            self.rows_s += time.perf_counter() - t1
            self.entries += len(batch.rows)

    def finish(self) -> float:
        """Catch sequences up with the explicit ids (PostgreSQL) and gather planner statistics; returns seconds."""
        t0 = time.perf_counter()
        if self.is_pg:
            with self.s.db.write() as conn:
                for table in ("segments", "users", "cases"):
                    conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                         f"(SELECT max(id) FROM {table}))")
            # What autovacuum would have done on its own by the time anyone searches a table this size.
            with self.s.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        # SQLite: the server never runs ANALYZE, so neither do we: its planner works without statistics.
        return time.perf_counter() - t0

    def disk_bytes(self) -> int:
        """The index's size on disk (the SQLite file and its WAL, or the PostgreSQL database)."""
        if self.is_pg:
            with self.s.db.read() as conn:
                return conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
        path = self.s.db.engine.url.database
        return sum(p.stat().st_size for p in (Path(path), Path(path + "-wal")) if p.exists())

    def log_size(self) -> int:
        with self.s.db.read() as conn:
            return conn.execute(select(log_head.c.size)).scalar_one()

    def count(self, where: str = "") -> int:
        with self.s.db.read() as conn:
            return conn.execute(text(f"SELECT count(*) FROM segments {where}")).scalar_one()


def user_rows(shape: Shape) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, int]]:
    """Users rows (explicit ids), officer number -> user id, unit -> its supervisor's user id."""
    pw = argon2.PasswordHasher().hash(PASSWORD)
    now = DAY0
    rows = [{"id": 1, "username": "admin", "display_name": "", "role": "administrator", "unit": None,
             "officer_no": None, "password_hash": pw, "disabled": False, "created_ns": now}]
    units = sorted({shape.unit(d) for d in range(shape.devices)})
    supervisor, officer = {}, {}
    for u in units:
        supervisor[u] = len(rows) + 1
        rows.append({"id": len(rows) + 1, "username": f"sup-{u}", "display_name": "", "role": "supervisor",
                     "unit": u, "officer_no": None, "password_hash": pw, "disabled": False, "created_ns": now})
    for u in units:
        for o in shape.officers(u):
            officer[o] = len(rows) + 1
            rows.append({"id": len(rows) + 1, "username": f"o{o}", "display_name": "", "role": "officer",
                         "unit": u, "officer_no": o, "password_hash": pw, "disabled": False, "created_ns": now})
    return rows, officer, supervisor


def stand_in_receipt(services: Services) -> bytes:
    """A real server receipt, whose bytes stand in (at their real size) for every row's."""
    return receipts.issue(services.identity.signer, receipts.SERVER_TYPE, {
        "server": services.identity.name, "gateway": "GW-U01", "device": "REC-0001", "seq": 1, "manifest": "ab" * 32,
        "media_sha256": "cd" * 32, "received_ns": DAY0, "log_index": 123456, "status": receipts.STORED,
        "findings": []})


def build(shape: Shape, seed: int, loaders: list[Loader], workers: int,
          progress: Callable[[str], None]) -> Samples:
    """Make the plan, enroll and add users in every backend, then make and load the footage batch by batch."""
    plan = make_plan(shape, seed)
    rows, officer_user, supervisor_user = user_rows(shape)
    units = sorted({shape.unit(d) for d in range(shape.devices)})
    query_units = [units[0], units[len(units) // 3], units[2 * len(units) // 3]]
    samples = Samples(query_units, [o for u in query_units for o in shape.officers(u)[:2]])
    for loader in loaders:
        loader.prepare(shape, rows)
    receipt = stand_in_receipt(loaders[0].s)
    days_per_chunk = max(1, round(10_000 * shape.days / shape.rows))
    chunks = chunks_of(plan, days_per_chunk)
    rng = random.Random(seed + 1)
    next_id = 0
    case_no = 0
    open_cases: list[tuple[int, set[int]]] = []  # recent joint-able cases: (case id, handler user ids)
    sample_every = max(1, shape.rows * len(query_units) // len(units) // 20_000)
    t_start = time.perf_counter()
    done = 0
    for made_list in made_chunks(shape, seed, receipt, chunks, workers):
        batch = Batch([], [], [], [], [])
        for made in made_list:
            unit, device = shape.unit(made.device), shape.device(made.device)
            sampled = unit in query_units
            incident_ids: dict[int, list[int]] = defaultdict(list)
            for row, incident, marks, point in zip(made.rows, made.incident, made.markers, made.point, strict=True):
                next_id += 1
                row[ID] = next_id
                batch.rows.append(row)
                batch.markers += [{"segment_id": next_id, "t_ns": t, "kind": k} for t, k in marks]
                if incident >= 0:
                    incident_ids[incident].append(next_id)
                if sampled:
                    if marks:
                        samples.markers[unit] += [(k, t) for t, k in marks]
                    if point is not None and next_id % sample_every == 0:
                        samples.points[unit].append((row[COLUMNS.index("start_ns")], *point))
                    if row[COLUMNS.index("officer")] in samples.officers and next_id % 5 == 0:
                        samples.officer_times[row[COLUMNS.index("officer")]].append(row[COLUMNS.index("start_ns")])
            shift_start = made.rows[0][COLUMNS.index("start_ns")]
            officer = made.rows[0][COLUMNS.index("officer")]
            samples.first_ns = samples.first_ns or shift_start
            samples.last_ns = made.rows[-1][COLUMNS.index("end_ns")]
            if sampled:
                if device not in samples.devices[unit]:
                    samples.devices[unit].append(device)
                samples.device_days[unit].append((device, DAY0 + made.day * DAY))
            handlers = {officer_user[officer], supervisor_user[unit]}
            for ids in incident_ids.values():
                if rng.random() >= P_CASE:
                    continue
                linked_ns = made.rows[0][COLUMNS.index("received_ns")] + rng.randrange(1, 30) * DAY
                if open_cases and rng.random() < P_JOIN:
                    case_id, held = open_cases[rng.randrange(len(open_cases))]
                    new = handlers - held
                    held |= new
                    number = f"2025-{case_id:06d}"
                else:
                    case_no += 1
                    case_id, new, number = case_no, set(handlers), f"2025-{case_no:06d}"
                    batch.cases.append({"id": case_id, "number": number, "title": f"incident {case_id}",
                                        "unit": unit, "created_ns": linked_ns, "created_by": officer_user[officer]})
                    open_cases.append((case_id, set(handlers)))
                    open_cases = open_cases[-200:]
                batch.handlers += [{"case_id": case_id, "user_id": h} for h in sorted(new)]
                batch.links += [{"case_id": case_id, "segment_id": i, "linked_ns": linked_ns,
                                 "linked_by": f"user:{officer_user[officer]}"} for i in ids]
                if unit in query_units:
                    samples.unit_cases[unit].append(number)
                if officer in samples.officers:
                    samples.officer_cases[officer].append(number)
        now = time.time_ns()
        for loader in loaders:
            loader.load(batch, now)
        done += len(batch.rows)
        elapsed = time.perf_counter() - t_start
        if len(batch.rows) and (done // 100_000 != (done - len(batch.rows)) // 100_000 or done == shape.rows):
            progress(f"  {done:>9,} rows loaded in {elapsed:5.0f} s ({done / elapsed:,.0f} rows/s); "
                     + "; ".join(f"{lo.name}: log {lo.log_s:.0f} s, rows {lo.rows_s:.0f} s" for lo in loaders))
    for made_unit in samples.unit_cases:
        samples.unit_cases[made_unit] = sorted(set(samples.unit_cases[made_unit]))
    for o in samples.officer_cases:
        samples.officer_cases[o] = sorted(set(samples.officer_cases[o]))
    return samples
