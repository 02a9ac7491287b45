"""The check a server receipt passes before the spool may delete anything: signed by the server's key (as the
trust list holds it), and naming this server, this gateway, and exactly the device, seq, manifest and media
the spool holds."""

from __future__ import annotations

import hashlib

from gateway.spool import Spooled
from protocol import receipts
from protocol.errors import ProtocolError
from protocol.receipts import Receipt
from protocol.trust import TrustList

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class ReceiptRefused(Exception):
    """A server receipt that does not prove the segment stored; `code` is the finding code when there is one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def check_server_receipt(raw: bytes, seg: Spooled, *, gateway: str, server: str, trust: TrustList) -> Receipt:
    """The verified receipt; ReceiptRefused if it is not the server's, or names anything else than `seg`."""
    try:
        receipt = receipts.open_receipt(raw, receipts.SERVER_TYPE, trust)
    except ProtocolError as exc:
        raise ReceiptRefused(f"the server receipt does not verify: {exc}", exc.code) from None
    expected = {"server": server, "gateway": gateway, "device": seg.device, "seq": seg.seq,
                "manifest": seg.manifest_hash}
    wrong = [f"{name} {receipt[name]!r} instead of {value!r}" for name, value in expected.items()
             if receipt[name] != value]
    if receipt["media_sha256"] not in _media_hashes(seg):
        wrong.append(f"media {receipt['media_sha256']} instead of {seg.media_sha256}")
    if wrong:
        raise ReceiptRefused(f"the server receipt names {', '.join(wrong)}")
    return receipt


def _media_hashes(seg: Spooled) -> tuple[str | None, ...]:
    """What the receipt may name as the media sent: its hash; for an empty body, which is what is sent without
    media, the server names the empty file's hash if the manifest names media, or none for a record."""
    return (seg.media_sha256,) if seg.media_sha256 is not None else (None, EMPTY_SHA256)
