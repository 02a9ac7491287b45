"""`make demo`: the largest real path that exists, on embedded defaults.

Today: a real recorder process (`liuhen recorder run`) recording 20 s against
simulated camera, GNSS and supervisor MCU, with a power cut in the middle,
checked with `liuhen verify`; the evidence protocol on synthetic recordings of
three recorders: keys and a trust file, `liuhen verify`, the same checks on a
tampered copy; then a real case server (liuhen/demo_server.py) takes all of it
over tus, and the footage is found, played, exported as a sealed evidence
package verified offline, and the server's transparency log is monitored.
Everything lands in ./demo-out (made anew each run).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hardware.keystore import read_private_key
from liuhen import demo_server
from liuhen.cli import main as liuhen
from liuhen.keyfiles import write_private_key
from protocol import layout, signatures
from simulators.synthetic import typical_shift

OUT = Path("demo-out")
DEVICES = ("REC-0001", "REC-0002", "REC-0003")


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


def serve(store: Path) -> int:
    step("A station gateway and a case server on embedded defaults (liuhen gateway run, liuhen server run)")
    stores = {"SIM-0001": OUT / "recorder" / "store", **{device: store for device in DEVICES}}
    keys = {"SIM-0001": OUT / "recorder" / "keys" / "SIM-0001.key",
            **{device: OUT / "keys" / f"{device}.key" for device in DEVICES}}
    return demo_server.run(OUT, stores, keys, lambda args: liuhen(args))


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
    served = serve(store)
    step("What this demo did")
    print(f"- ran liuhen recorder run against a simulated camera, GNSS receiver and MCU for 20 s with one power "
          f"cut; its store verified with exit {recorded} ({OUT}/recorder/store)")
    print(f"- made {len(DEVICES)} device keys (Ed25519 and ES256) and {trust_path}")
    print(f"- recorded {len(list(store.rglob('*' + layout.MANIFEST_SUFFIX)))} signed manifests into {store}/")
    print(f"- liuhen verify on the original: exit {clean} (intact); on the tampered copy: exit {tampered}")
    print(f"- ran liuhen gateway run and liuhen server run on embedded defaults ({OUT}/gateway, {OUT}/server): "
          f"every recorder docked, was freed by signed dock receipts, and everything reached the server with "
          f"signed receipts; then searched, played, exported and verified offline, its log monitored: exit {served}")
    return 0 if (recorded, clean, tampered, served) == (0, 0, 1, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
