from __future__ import annotations

from pathlib import Path

import pytest

from protocol import signatures
from protocol.trust import TrustList, trusted_key
from simulators.synthetic import SyntheticDevice, typical_shift


class Fleet:
    """Device keys, a trust list and synthetic recordings under one store folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.trust = TrustList()
        self.signers: dict[str, signatures.KeySigner] = {}

    def signer(self, device: str, alg: str = signatures.ED25519) -> signatures.KeySigner:
        if device not in self.signers:
            self.signers[device] = signatures.KeySigner(signatures.generate(alg))
            self.trust.add(trusted_key(self.signers[device].public_key(), "device", device))
        return self.signers[device]

    def device(self, name: str, seed: int = 0) -> SyntheticDevice:
        return SyntheticDevice(self.root, name, self.signer(name), seed=seed)

    def shift(self, name: str, segments: int = 6, seed: int = 0) -> SyntheticDevice:
        return typical_shift(self.root, name, self.signer(name), segments=segments, seed=seed)

    def trust_file(self) -> Path:
        path = self.root.parent / "trust.json"
        path.write_bytes(self.trust.to_bytes())
        return path


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path / "store")
