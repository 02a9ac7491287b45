"""The trust list the dock checks recorders against: a trust file on the gateway's disk.

The station keeps the file current from the case server's public `/api/trust` and writes it atomically;
the dock reads it again whenever it changed, so an enrollment or a revocation counts from the next hello
without a restart, and docking goes on while the server is away. A file that cannot be parsed changes
nothing: the last good list stays in use and the error is kept for the station page.
"""

from __future__ import annotations

import logging
from pathlib import Path

from protocol.trust import TrustFileError, TrustList, parse_trust_list

log = logging.getLogger("liuhen.gateway.trust")


class DeviceTrust:
    def __init__(self, path: Path) -> None:
        """Read the trust file; a missing or unusable one is a TrustFileError (the dock cannot start)."""
        self.path = path
        self.error: str | None = None
        self._stamp = self._stat()
        try:
            self._trust = parse_trust_list(path.read_bytes())
        except OSError as exc:
            raise TrustFileError(f"device trust file {path}: {exc.strerror}") from exc

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def current(self) -> TrustList:
        """The trust list as the file now says, or the last good one if the file is unusable."""
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._trust = parse_trust_list(self.path.read_bytes())
                self.error = None
            except (OSError, TrustFileError) as exc:
                self.error = f"device trust file {self.path} unusable, the last good one stays in use: {exc}"
                log.error("%s", self.error)
        return self._trust
