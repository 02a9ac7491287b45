"""Benchmark of the evidence protocol.

Figures:
- manifest signing and verification rates (manifests/s, Ed25519 and ES256);
- chain verification throughput (MB/s of media verified by `liuhen verify`'s
  code path) as a ratio to plain hashlib SHA-256 over the same files in the
  same run: hashing is the floor, everything else must be negligible (target 0.9).

Usage: python bench/protocol.py [--mb 1024] [--segment-mb 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# This script is named after the package it measures: keep its own folder off
# the import path so that `protocol` below is the package, not this file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from liuhen.verify_folder import hash_file, verify_paths  # noqa: E402
from protocol import manifest, signatures  # noqa: E402
from protocol.trust import TrustList, trusted_key  # noqa: E402
from simulators.synthetic import SyntheticDevice  # noqa: E402

CHAIN_TARGET = 0.9


def result_ratio(name: str, ratio: float, target: float) -> str:
    return f"RESULT {name} ratio={ratio:.3f} target={target} {'PASS' if ratio >= target else 'FAIL'}"


def result_value(name: str, value: float, unit: str) -> str:
    return f"RESULT {name} value={value:.0f} unit={unit}"


def make_store(root: Path, total_mb: int, segment_mb: int) -> TrustList:
    trust = TrustList()
    per_device = max(1, total_mb // segment_mb // 4)
    for d in range(4):
        signer = signatures.KeySigner(signatures.generate())
        name = f"BENCH-{d:02d}"
        trust.add(trusted_key(signer.public_key(), "device", name))
        dev = SyntheticDevice(root, name, signer, seed=d)
        dev.boot()
        for _ in range(per_device):
            dev.segment(size=segment_mb * 1_000_000)
    return trust


def hash_all(root: Path) -> int:
    """The baseline: plain hashlib SHA-256 of every media file, one after another."""
    total = 0
    for path in sorted(root.rglob("*.bin")):
        facts = hash_file(path)
        assert facts is not None
        total += facts.size
    return total


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def chain_ratio(root: Path, trust: TrustList, rounds: int) -> tuple[float, float, float]:
    """Best-of-rounds rates, alternating baseline and verification so drift hits both."""
    hash_best = verify_best = 0.0
    total = hash_all(root)  # warm the page cache for both
    for _ in range(rounds):
        dt, _ = timed(lambda: hash_all(root))
        hash_best = max(hash_best, total / dt)
        dt, report = timed(lambda: verify_paths([root], trust))
        assert report.intact, "benchmark store must verify"
        verify_best = max(verify_best, total / dt)
    return verify_best / hash_best, hash_best / 1e6, verify_best / 1e6


def signing_rates(alg: str, count: int) -> tuple[float, float]:
    signer = signatures.KeySigner(signatures.generate(alg))
    trust = TrustList([trusted_key(signer.public_key(), "device", "BENCH")])
    with tempfile.TemporaryDirectory() as tmp:
        dev = SyntheticDevice(Path(tmp), "BENCH", signer)
        dev.boot()
        template = dev.segment(size=16).fields
    payloads = [manifest.build({**template, "seq": i}).payload for i in range(count)]
    dt_sign, envelopes = timed(lambda: [signatures.seal(signer, manifest.TYPE, p) for p in payloads])

    def verify_all() -> None:
        for raw in envelopes:
            env = signatures.open_envelope(raw, manifest.TYPE)
            trust.check_envelope(env, "device", manifest.parse(env.payload).device)

    dt_verify, _ = timed(verify_all)
    return count / dt_sign, count / dt_verify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024, help="media to verify, MB (default 1024)")
    parser.add_argument("--segment-mb", type=int, default=8, help="segment size, MB (default 8)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--manifests", type=int, default=2000, help="manifests to sign and verify")
    args = parser.parse_args()

    lines = []
    for alg in signatures.ALGORITHMS:
        sign_rate, verify_rate = signing_rates(alg, args.manifests)
        print(f"{alg}: sign {sign_rate:.0f}/s, verify (parse + check + signature) {verify_rate:.0f}/s")
        lines += [result_value(f"manifest_sign_{alg}", sign_rate, "manifests/s"),
                  result_value(f"manifest_verify_{alg}", verify_rate, "manifests/s")]

    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        root = Path(tmp) / "store"
        trust = make_store(root, args.mb, args.segment_mb)
        ratio, hash_mb, verify_mb = chain_ratio(root, trust, args.rounds)
    print(f"plain SHA-256 {hash_mb:.0f} MB/s; chain verification {verify_mb:.0f} MB/s")
    lines.append(result_ratio("chain_verify_vs_sha256", ratio, CHAIN_TARGET))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
