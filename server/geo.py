"""Places in footage searches: a box, or a circle around a point.

A segment row carries the bounding box of its track in 1e-7 degrees, so SQL narrows the candidates
cheaply; a candidate matches only when one of the track points of its signed manifest lies in the
place. Segments without track points match no place. Query coordinates are decimal degrees with at
most 7 decimals, so each converts exactly to the 1e-7-degree integers the manifests hold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

E7 = 10_000_000
EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG): haversine distances are within 0.5 % of the ellipsoid's
MAX_RADIUS_M = 100_000
_DEGREES = re.compile(r"-?[0-9]{1,3}(\.[0-9]{1,7})?")
_METERS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,3})?")
LAT_LIMIT, LON_LIMIT = 90 * E7, 180 * E7


class PlaceError(ValueError):
    pass


@dataclass(frozen=True)
class Box:
    """Inclusive bounds in 1e-7 degrees; never crosses the antimeridian (min_lon <= max_lon)."""

    min_lat: int
    min_lon: int
    max_lat: int
    max_lon: int

    @property
    def bounds(self) -> Box:
        return self

    def contains(self, lat: int, lon: int) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon

    def covers(self, box: Box) -> bool:
        """Whether every point in `box` lies in this box, so its track points need not be read."""
        return self.contains(box.min_lat, box.min_lon) and self.contains(box.max_lat, box.max_lon)


@dataclass(frozen=True)
class Circle:
    lat: int
    lon: int
    meters: float

    @property
    def bounds(self) -> Box:
        """A box holding the whole circle (the exact longitude extent of a spherical cap, plus a margin for
        rounding); across a pole or the antimeridian it spans all longitudes."""
        angle = self.meters / EARTH_RADIUS_M
        dlat = math.ceil(math.degrees(angle) * E7) + 2
        min_lat, max_lat = max(self.lat - dlat, -LAT_LIMIT), min(self.lat + dlat, LAT_LIMIT)
        every_lon = Box(min_lat, -LON_LIMIT, max_lat, LON_LIMIT)
        if abs(min_lat) == LAT_LIMIT or abs(max_lat) == LAT_LIMIT:
            return every_lon
        ratio = math.sin(angle) / math.cos(math.radians(self.lat / E7))
        if ratio >= 1:
            return every_lon
        dlon = math.ceil(math.degrees(math.asin(ratio)) * E7) + 2
        if self.lon - dlon < -LON_LIMIT or self.lon + dlon > LON_LIMIT:
            return every_lon
        return Box(min_lat, self.lon - dlon, max_lat, self.lon + dlon)

    def contains(self, lat: int, lon: int) -> bool:
        return distance_m(self.lat, self.lon, lat, lon) <= self.meters

    def covers(self, box: Box) -> bool:
        # On a lat/lon box under a degree wide, the distance from a point peaks only at the box's corners,
        # unless the box holds the point's antipode (20 000 km away, far beyond any radius allowed): so the
        # box lies in the circle when its four corners do.
        if box.max_lat - box.min_lat >= E7 or box.max_lon - box.min_lon >= E7:
            return False
        return all(self.contains(lat, lon) for lat in (box.min_lat, box.max_lat) for lon in (box.min_lon, box.max_lon))


Place = Box | Circle


def distance_m(lat1: int, lon1: int, lat2: int, lon2: int) -> float:
    """Great-circle distance (haversine) between two points given in 1e-7 degrees."""
    p1, p2 = math.radians(lat1 / E7), math.radians(lat2 / E7)
    dp, dl = p2 - p1, math.radians((lon2 - lon1) / E7)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def touches(place: Place, points: Iterable[Mapping[str, int]]) -> bool:
    """Whether any track point (manifest `track.points`) lies in the place."""
    return any(place.contains(p["lat_e7"], p["lon_e7"]) for p in points)


def _degrees(text: str, name: str, limit: int) -> int:
    text = text.strip()
    if not _DEGREES.fullmatch(text):
        raise PlaceError(f"{name} must be decimal degrees with at most 7 decimals, not {text!r}")
    value = int(Decimal(text) * E7)
    if abs(value) > limit:
        raise PlaceError(f"{name} must be between {-limit // E7} and {limit // E7} degrees")
    return value


def _parts(text: str, count: int, what: str) -> list[str]:
    parts = text.split(",")
    if len(parts) != count:
        raise PlaceError(f"{what}: expected {count} comma-separated numbers, got {len(parts)}")
    return parts


def parse_box(text: str) -> Box:
    """`min_lat,min_lon,max_lat,max_lon` in decimal degrees."""
    parts = _parts(text, 4, "box is min_lat,min_lon,max_lat,max_lon")
    box = Box(_degrees(parts[0], "box min_lat", LAT_LIMIT), _degrees(parts[1], "box min_lon", LON_LIMIT),
              _degrees(parts[2], "box max_lat", LAT_LIMIT), _degrees(parts[3], "box max_lon", LON_LIMIT))
    if box.min_lat > box.max_lat:
        raise PlaceError("box min_lat is north of max_lat")
    if box.min_lon > box.max_lon:
        raise PlaceError("box min_lon is east of max_lon: split a box that crosses the 180th meridian into two")
    return box


def parse_near(text: str) -> Circle:
    """`lat,lon,meters`: decimal degrees and a radius of 1 m to 100 km."""
    parts = _parts(text, 3, "near is lat,lon,meters")
    meters = parts[2].strip()
    if not _METERS.fullmatch(meters) or not 1 <= float(meters) <= MAX_RADIUS_M:
        raise PlaceError(f"near radius must be 1 to {MAX_RADIUS_M} meters, not {meters!r}")
    return Circle(_degrees(parts[0], "near lat", LAT_LIMIT), _degrees(parts[1], "near lon", LON_LIMIT), float(meters))
