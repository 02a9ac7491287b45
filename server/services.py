"""What every request handler of the server shares: configuration, index, blobs, log, key, clock, trust list."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from server.blobs import BlobStore
from server.config import ServerConfig
from server.database import Database
from server.identity import ServerIdentity
from server.transparency import TransparencyLog
from server.trust_store import TrustStore


@dataclass
class Services:
    config: ServerConfig
    db: Database
    blobs: BlobStore
    identity: ServerIdentity
    log: TransparencyLog
    clock: Callable[[], int] = field(default=time.time_ns)
    trust: TrustStore = field(default_factory=TrustStore)


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
