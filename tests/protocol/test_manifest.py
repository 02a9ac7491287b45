from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from protocol import canonical, chain, errors, manifest
from protocol.errors import ProtocolError

from .conftest import Fleet


@pytest.fixture
def fields(fleet: Fleet) -> dict[str, Any]:
    dev = fleet.device("REC-0001")
    dev.boot()
    return dict(dev.segment(markers=[2]).fields)


def test_build_and_parse_round_trip(fields: dict[str, Any]) -> None:
    m = manifest.build(fields)
    again = manifest.parse(m.payload)
    assert again.fields == m.fields and again.hash == m.hash and again.prev == bytes.fromhex(fields["prev"])


def _with(fields: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    copy = canonical.decode(canonical.encode(fields))
    *parents, last = path.split(".")
    target = copy
    for p in parents:
        target = target[int(p)] if isinstance(target, list) else target[p]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return copy


_DELETE = object()


@pytest.mark.parametrize(
    "path, value",
    [
        ("v", 2),
        ("v", True),
        ("device", "bad id with spaces"),
        ("session", "xyz"),
        ("seq", -1),
        ("seq", "3"),
        ("prev", "00"),
        ("kind", "movie"),
        ("time.end_ns", 0),
        ("time.source", "sundial"),
        ("time.extra", 1),
        ("media", None),
        ("media.name", "../../etc/passwd"),
        ("media.size", True),
        ("media.codecs", ["a"] * 9),
        ("track.points.0.lat_e7", 900_000_001),
        ("track.none_reason", "no-fix"),
        ("markers.0.kind", ""),
        ("assignment", {"officer": "1"}),
        ("prerecord", 0),
        ("detail", []),
        ("firmware", _DELETE),
    ],
)
def test_malformed_fields_are_rejected(fields: dict[str, Any], path: str, value: Any) -> None:
    bad = _with(fields, path, value)
    with pytest.raises(ProtocolError) as exc:
        manifest.parse(canonical.encode(bad))
    assert exc.value.code == errors.MANIFEST_MALFORMED


def test_records_without_media_and_with_gap_ranges(fields: dict[str, Any]) -> None:
    rec = _with(fields, "kind", manifest.RECOVERY)
    rec["media"] = None
    rec["detail"] = {"missing": [[0, 0]], "last_seq": None, "partial": []}
    assert manifest.parse(canonical.encode(rec)).missing_ranges() == [(0, 0)]
    rec["detail"] = {"missing": [[0, rec["seq"]]]}
    with pytest.raises(ProtocolError, match="first <= last < seq"):
        manifest.parse(canonical.encode(rec))


def test_float_and_non_canonical_payloads(fields: dict[str, Any]) -> None:
    payload = manifest.build(fields).payload
    with pytest.raises(ProtocolError) as exc:
        manifest.parse(payload.replace(b'"frames":300', b'"frames":300.0'))
    assert exc.value.code == errors.MANIFEST_MALFORMED
    with pytest.raises(ProtocolError) as exc:
        manifest.parse(b'{ ' + payload[1:])
    assert exc.value.code == errors.MANIFEST_NON_CANONICAL


def test_genesis_is_device_specific() -> None:
    assert manifest.genesis("REC-0001") != manifest.genesis("REC-0002")


def _items(fleet: Fleet, device: str) -> list[chain.Item]:
    return [chain.Item(str(p), p.read_bytes()) for p in sorted((fleet.root / device).glob("*.manifest"))]


def _facts(item: chain.Item, m: manifest.Manifest) -> chain.FileFacts | None:
    from liuhen.verify_folder import hash_file

    return hash_file(Path(item.location).parent / m.media["name"])


def test_chain_continues_from_a_known_head(fleet: Fleet) -> None:
    dev = fleet.shift("REC-0001")
    head = (dev.seq - 1, dev.prev)
    for p in (fleet.root / "REC-0001").iterdir():
        p.unlink()  # the gateway already holds these
    dev.segment()
    dev.segment()
    report = chain.verify(_items(fleet, "REC-0001"), fleet.trust, _facts, known_heads={"REC-0001": head})
    assert report.intact and report.devices["REC-0001"].first_seq == head[0] + 1

    other = (head[0], b"\x22" * 32)
    report = chain.verify(_items(fleet, "REC-0001"), fleet.trust, _facts, known_heads={"REC-0001": other})
    assert {f.code for f in report.findings()} == {errors.CHAIN_HEAD_MISMATCH}
    report = chain.verify(_items(fleet, "REC-0001"), fleet.trust, _facts,
                          known_heads={"REC-0001": (head[0] + 5, head[1])})
    assert {f.code for f in report.findings()} == {errors.CHAIN_HEAD_MISMATCH}
