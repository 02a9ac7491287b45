"""A bay's link state: the challenge it gave, the session a proven device holds, and refusals.

A bay serves one recorder at a time; a new hello on it ends whatever session was there (the recorder
reconnected, or another was docked). Sessions live in memory only: after a gateway restart a recorder
starts again with hello, and the spool tells what had already arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.dock_checks import Offered
from protocol import errors
from protocol.dock import Challenge, error_body


class DockError(Exception):
    """A refusal on the dock link: HTTP status, finding code, a sentence for people, extra answer fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, **self.extra)


@dataclass
class DockSession:
    token: str
    device: str
    clock_offset_ns: int  # the device's clock minus the gateway's, measured at the hello
    plan: dict[int, Offered] = field(default_factory=dict)  # files still to come, by seq


@dataclass
class BayLink:
    challenge: Challenge | None = None
    session: DockSession | None = None

    def session_for(self, token: str | None) -> DockSession:
        if self.session is None or token != self.session.token:
            raise DockError(401, errors.DOCK_NO_SESSION, "no session on this bay for that token: say hello again")
        return self.session
