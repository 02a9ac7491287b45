"""`make demo`: the largest real path that exists, on embedded defaults.

Today: a real recorder process (`liuhen recorder run`) recording 20 s against
simulated camera, GNSS and supervisor MCU, with a power cut in the middle,
checked with `liuhen verify`; then the evidence protocol end to end on
synthetic recordings of three recorders: keys and a trust file, `liuhen
verify`, the same checks on a tampered copy, and every manifest committed to a
transparency log with a signed checkpoint and an offline proof. Everything
lands in ./demo-out (made anew each run).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from hardware.keystore import read_private_key
from liuhen.cli import main as liuhen
from liuhen.keyfiles import write_private_key
from protocol import layout, signatures
from protocol.tlog import checkpoint, merkle, proof_bundle
from simulators.synthetic import typical_shift

OUT = Path("demo-out")
DEVICES = ("REC-0001", "REC-0002", "REC-0003")
LOG_ORIGIN = "demo.liuhen.example/log"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def make_keys() -> tuple[dict[str, signatures.KeySigner], Path]:
    step("Device keys and a trust file (liuhen keys)")
    signers = {}
    for i, device in enumerate(DEVICES):
        alg = signatures.ES256 if i == 2 else signatures.ED25519
        path = OUT / "keys" / f"{device}.key"
        write_private_key(path, signatures.generate(alg))
        signers[device] = signatures.KeySigner(read_private_key(path))
        liuhen(["keys", "trust-add", "--trust", str(OUT / "trust.json"), "--key", str(path),
                "--role", "device", "--owner", device])
    return signers, OUT / "trust.json"


def record(signers: dict[str, signatures.KeySigner]) -> Path:
    step("Three recorders' shifts: boot, segments with a marker, a power cut and a signed recovery")
    store = OUT / "store"
    for i, (device, signer) in enumerate(signers.items()):
        dev = typical_shift(store, device, signer, segments=8, size=256_000, seed=i)
        print(f"{device}: {len(dev.manifests)} signed manifests, seq 0..{dev.seq - 1}")
    return store


def tamper(store: Path) -> Path:
    step("A tampered copy: one segment altered, one manifest removed, one file renamed over another")
    copy = OUT / "tampered"
    shutil.copytree(store, copy)
    seg = copy / "REC-0001" / layout.media_name(2, "bin")
    seg.write_bytes(b"X" + seg.read_bytes()[1:])
    (copy / "REC-0002" / layout.manifest_name(3)).unlink()
    a, b = (copy / "REC-0003" / layout.manifest_name(n) for n in (1, 2))
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    return copy


def transparency_log(store: Path) -> None:
    step("Transparency log: every manifest envelope appended, checkpoint signed, offline proof checked")
    tree = merkle.MemoryTree()
    envelopes = sorted(store.rglob(f"*{layout.MANIFEST_SUFFIX}"))
    for path in envelopes:
        tree.append(path.read_bytes())
    log_key = checkpoint.NoteSigner(LOG_ORIGIN, ed25519.Ed25519PrivateKey.generate())
    head = checkpoint.Checkpoint(LOG_ORIGIN, tree.size, merkle.tree_root(tree, tree.size))
    signed = checkpoint.sign_checkpoint(head, [log_key])
    (OUT / "checkpoint").write_bytes(signed)
    print(signed.decode())
    index = len(envelopes) // 2
    bundle = proof_bundle.ProofBundle(index, tuple(merkle.inclusion_proof(tree, index, tree.size)), signed)
    (OUT / f"entry-{index}{proof_bundle.FILE_EXTENSION}").write_bytes(bundle.encode())
    verified = proof_bundle.verify_bundle_entry(
        bundle.encode(), envelopes[index].read_bytes(), LOG_ORIGIN, [log_key.verifier]
    )
    print(f"entry {index} ({envelopes[index].relative_to(OUT)}) is in the log of size "
          f"{verified.checkpoint.size}: proof of {len(bundle.proof)} hashes verified offline")
    print(f"verifier key: {log_key.verifier}")


def recorder_run() -> int:
    step("A real recorder process on simulated hardware: 20 s of recording, one power cut (liuhen sim record)")
    out = OUT / "recorder"
    code = liuhen(["sim", "record", "--device", "SIM-0001", "--seconds", "20", "--out", str(out),
                   "--faults", "power-cut=1", "--segment-seconds", "5"])
    if code != 0:
        return code
    step(f"liuhen verify {out} --keys {out / 'trust.json'}")
    return liuhen(["verify", str(out), "--keys", str(out / "trust.json")])


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    recorded = recorder_run()
    (OUT / "keys").mkdir(parents=True)
    signers, trust_path = make_keys()
    store = record(signers)
    step(f"liuhen verify {store} --keys {trust_path}")
    clean = liuhen(["verify", str(store), "--keys", str(trust_path)])
    copy = tamper(store)
    step(f"liuhen verify {copy} --keys {trust_path}")
    tampered = liuhen(["verify", str(copy), "--keys", str(trust_path)])
    transparency_log(store)
    step("What this demo did")
    print(f"- ran liuhen recorder run against a simulated camera, GNSS receiver and MCU for 20 s with one power "
          f"cut; its store verified with exit {recorded} ({OUT}/recorder/store)")
    print(f"- made {len(DEVICES)} device keys (Ed25519 and ES256) and {trust_path}")
    print(f"- recorded {len(list(store.rglob('*' + layout.MANIFEST_SUFFIX)))} signed manifests into {store}/")
    print(f"- liuhen verify on the original: exit {clean} (intact); on the tampered copy: exit {tampered}")
    print(f"- committed every manifest to a transparency log; checkpoint in {OUT}/checkpoint")
    print("The docking gateway and the case server come next; this demo grows with them.")
    return 0 if (recorded, clean, tampered) == (0, 0, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
