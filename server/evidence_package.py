"""Write evidence packages: the sealed zip a supervisor exports for a court or an outside auditor.

The format is docs/evidence-package.md. This module only writes: the server
gathers the signed bytes and the media paths (from its database and blob store)
and passes them in, so the writer never touches a database. Media is copied in
bounded memory; the package appears under its final name only once it is
complete and on disk (temp file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from protocol import manifest, package, signatures
from protocol.errors import ProtocolError
from protocol.package import IndexEntry
from protocol.tlog.checkpoint import open_checkpoint, parse_vkey
from protocol.tlog.proof_bundle import parse_bundle
from protocol.trust import TrustFileError, parse_trust_list
from server.durable import fsync_dir

# Fixed member metadata, so the same inputs give the same bytes whenever and wherever they are written.
_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_UNIX = 3
_MODE = 0o100644 << 16
_CHUNK = 1 << 20


class PackageError(ValueError):
    """The inputs cannot form a valid package; nothing was written."""


@dataclass(frozen=True, kw_only=True)
class PackageSegment:
    """One manifest of the clip with everything the server holds for it, as stored (bytes exactly).

    `media_path` is the original media file, stored in the package as `media_name` (the name the manifest
    gives); records without media have neither. A segment whose media was purged has `tombstone` instead.
    `proof` is the tlog-proof bundle of the manifest envelope against the package checkpoint; the dock
    receipt and the tombstone may come with proofs of their own log entries.
    """

    device: str
    seq: int
    manifest: bytes
    proof: bytes
    media_path: Path | None = None
    media_name: str | None = None
    dock_receipt: bytes | None = None
    server_receipt: bytes | None = None
    tombstone: bytes | None = None
    dock_proof: bytes | None = None
    tombstone_proof: bytes | None = None


@dataclass(frozen=True)
class PackageInfo:
    path: Path
    sha256: str  # of the whole zip, seal included: what the server records in its audit trail
    size: int
    files: tuple[IndexEntry, ...]


def write_package(
    out_path: Path,
    segments: Sequence[PackageSegment],
    checkpoint: bytes,
    trust_json: bytes,
    log_vkey: str,
    export: Mapping[str, Any],
    signer: signatures.Signer,
) -> PackageInfo:
    """Write the package to `out_path` and return its digest, size and index.

    `export` holds the index fields id, created_ns, server, actor, reason_sha256, case and clip
    ({devices, from_ns, to_ns}); `signer` is the server key named `export["server"]` in `trust_json`,
    an Ed25519 key, and `log_vkey` the log's note verifier key (for a Liuhen server, the same key).
    Raises PackageError (and writes nothing) when the inputs do not form a valid package.
    """
    fields = dict(export)
    try:
        package.encode_index(fields, [])  # refuse bad export fields before anything else
    except ProtocolError as exc:
        raise PackageError(exc.message) from exc
    _check_keys(signer, trust_json, log_vkey, checkpoint, fields)
    sources = _members(segments, checkpoint, trust_json, log_vkey, fields, signer.keyid)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w+b") as f:
            files = _write_zip(f, sources, fields, package.seal_length(signer.keyid, fields["id"]))
            whole = _seal(f, signer, fields["id"])
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out_path.parent)
    return PackageInfo(out_path, whole, size, tuple(files))


def _check_keys(signer: signatures.Signer, trust_json: bytes, log_vkey: str, checkpoint: bytes,
                fields: dict[str, Any]) -> None:
    """Refuse a package that could never verify: seal key not the server's, checkpoint not the log's."""
    if signer.alg != package.SEAL_ALG:
        raise PackageError(f"the package seal is signed with {package.SEAL_ALG}, not {signer.alg}")
    try:
        trust = parse_trust_list(trust_json)
        vkey = parse_vkey(log_vkey)
        open_checkpoint(checkpoint, vkey.name, [vkey])
    except (TrustFileError, ProtocolError) as exc:
        raise PackageError(str(exc)) from exc
    key = trust.get(signer.keyid)
    if key is None or key.role != "server" or key.owner != fields["server"]:
        raise PackageError(f"the trust list must hold the signing key as server {fields['server']}'s key")


def _members(segments: Sequence[PackageSegment], checkpoint: bytes, trust_json: bytes, log_vkey: str,
             fields: dict[str, Any], keyid: str) -> dict[str, bytes | Path]:
    sources: dict[str, bytes | Path] = {
        package.README: _readme(fields, keyid, log_vkey),
        package.TRUST: trust_json,
        package.LOG_VKEY: (log_vkey + "\n").encode("ascii"),
        package.CHECKPOINT: checkpoint,
    }
    clip_devices = set(fields["clip"]["devices"])

    def add(name: str, source: bytes | Path | None) -> None:
        if source is None:
            return
        if name in sources:
            raise PackageError(f"{name} is in the package twice")
        sources[name] = source

    for s in segments:
        if not manifest.valid_device_id(s.device) or s.device not in clip_devices:
            raise PackageError(f"segment device {s.device!r} is not a device of the clip")
        if (s.media_path is None) != (s.media_name is None) or (s.media_path and s.tombstone):
            raise PackageError(f"{s.device} seq {s.seq}: give media_path with media_name, or a tombstone, not both")
        for proof in (s.proof, s.dock_proof, s.tombstone_proof):
            if proof is not None and _proof_checkpoint(proof) != checkpoint:
                raise PackageError(f"{s.device} seq {s.seq}: a proof is not against the package checkpoint")
        add(package.member_name(package.MANIFEST, s.device, s.seq), s.manifest)
        add(package.member_name(package.PROOF, s.device, s.seq), s.proof)
        add(package.member_name(package.DOCK, s.device, s.seq), s.dock_receipt)
        add(package.member_name(package.SERVER, s.device, s.seq), s.server_receipt)
        add(package.member_name(package.TOMBSTONE, s.device, s.seq), s.tombstone)
        add(package.member_name(package.DOCK_PROOF, s.device, s.seq), s.dock_proof)
        add(package.member_name(package.TOMBSTONE_PROOF, s.device, s.seq), s.tombstone_proof)
        if s.media_name is not None:
            name = package.media_member(s.device, s.media_name)
            if package.classify(name) != package.Member(package.MEDIA, s.device):
                raise PackageError(f"{s.device} seq {s.seq}: {s.media_name!r} is not a media file name")
            add(name, s.media_path)
    return sources


def _proof_checkpoint(proof: bytes) -> bytes:
    try:
        return parse_bundle(proof).checkpoint
    except ProtocolError as exc:
        raise PackageError(f"a proof bundle is malformed: {exc}") from exc


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, _DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED  # media is compressed already; stored members cannot be zip bombs
    info.create_system = _UNIX
    info.external_attr = _MODE
    return info


def _write_zip(f: BinaryIO, sources: dict[str, bytes | Path], fields: dict[str, Any],
               seal_length: int) -> list[IndexEntry]:
    """Members in index order, export.json last, and a zeroed comment of the seal's exact length."""
    files: list[IndexEntry] = []
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in sorted(sources, key=lambda n: n.encode()):
            source = sources[name]
            info = _info(name)
            if isinstance(source, Path):
                files.append(_copy_media(zf, info, source))
            else:
                zf.writestr(info, source)
                files.append(IndexEntry(name, hashlib.sha256(source).hexdigest(), len(source)))
        try:
            zf.writestr(_info(package.INDEX), package.encode_index(fields, files))
        except ProtocolError as exc:
            raise PackageError(exc.message) from exc
        zf.comment = bytes(seal_length)
    return files


def _copy_media(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> IndexEntry:
    """Stream a media file in; the index gets the hash of the bytes written, whatever the manifest says."""
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        info.file_size = size  # tells zipfile up front whether the member needs ZIP64
        with zf.open(info, "w") as dst:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
    # zipfile records the size it wrote; a file that grew or shrank meanwhile must not pass unnoticed.
    if info.file_size != size:
        raise PackageError(f"{path} changed while it was copied")
    return IndexEntry(info.filename, digest.hexdigest(), info.file_size)


def _seal(f: BinaryIO, signer: signatures.Signer, export_id: str) -> str:
    """Replace the zeroed comment with the seal over everything before it; return the whole file's SHA-256."""
    end = f.seek(0, os.SEEK_END)
    covered = end - package.seal_length(signer.keyid, export_id)
    f.seek(0)
    digest = hashlib.sha256()
    left = covered
    while left:
        chunk = f.read(min(_CHUNK, left))
        digest.update(chunk)
        left -= len(chunk)
    seal = package.make_seal(signer, digest.digest(), export_id)
    f.write(seal)
    digest.update(seal)
    return digest.hexdigest()


def _readme(fields: dict[str, Any], keyid: str, log_vkey: str) -> bytes:
    created = datetime.fromtimestamp(fields["created_ns"] // 1_000_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return README_TEMPLATE.format(
        export=fields["id"], server=fields["server"], created=created, case=fields["case"] or "—",
        keyid=keyid, vkey=log_vkey,
    ).encode("utf-8")


# Chinese text uses full-width punctuation, which ruff takes for look-alikes of ASCII (RUF001).
README_TEMPLATE = """\
留痕 (Liuhen) 执法记录仪证据包 / Liuhen body-worn camera evidence package
======================================================================

导出编号 Export id:      {export}
案件 Case:               {case}
导出服务器 Server:       {server}
导出时间 Created (UTC):  {created}
服务器密钥 Server key:   {keyid}
日志密钥 Log key:        {vkey}

这是什么
--------
本压缩包由案件服务器导出，包含执法记录仪的原始证据：记录仪签名的片段清单（segments/*/*.manifest）、
逐字节未改动的原始视频文件、对接站和服务器签发的回执（receipts/）、公开透明日志的包含证明（proofs/）、
日志检查点（checkpoint）以及所需的全部公钥（trust.json、log.vkey）。export.json 列出每个文件的
SHA-256 和大小。整个压缩包由服务器签名封存（签名位于 ZIP 注释中）：改动任何一个字节，验证都会失败。

如何验证
--------
1. 运行 `liuhen verify 本文件.zip`。退出码 0 表示完整无损，1 表示发现问题（逐条列出代码和说明），2 表示无法读取。
2. 报告中醒目列出服务器密钥和日志密钥。必须将它们与执法机关公布的密钥核对；上面列出的密钥来自本压缩包
   本身，不能作为证明。也可以使用机关公布的密钥文件：`liuhen verify 本文件.zip --keys 公布的密钥.json`。
3. 不使用 Liuhen 的人工核验步骤（格式详见 Liuhen 文档 docs/evidence-package.md 和 docs/protocol.md）：
   a. 核对服务器密钥指纹与机关公布的一致，并用该密钥验证 ZIP 注释中的封存签名；
   b. 按 export.json 核对每个文件的 SHA-256 和大小；
   c. 用 trust.json 中记录仪的公钥验证每个片段清单的签名；
   d. 核对每个视频文件的 SHA-256 与其清单一致；
   e. 核对清单链：每个清单的 prev 等于前一个清单内容的 SHA-256，中间没有无法解释的缺号；
   f. 验证对接站回执和服务器回执的签名，并核对它们记载的清单和视频哈希；
   g. 用 log.vkey 验证检查点签名，并用 proofs/ 中的包含证明核对每个清单都在透明日志中。

What this is
------------
This zip was exported by the case server. It holds original body-worn camera evidence: the segment
manifests the recorder signed (segments/*/*.manifest), the original media files byte for byte, the dock
and server receipts (receipts/), inclusion proofs in the public transparency log (proofs/), the log
checkpoint (checkpoint) and every public key needed (trust.json, log.vkey). export.json lists every file
with its SHA-256 and size. The whole zip is sealed by the server (the seal is the zip archive comment):
changing any byte makes verification fail.

How to verify
-------------
1. Run `liuhen verify THIS.zip`. Exit status 0: intact; 1: findings (each with a code and an
   explanation); 2: the file cannot be read.
2. The report shows the server key and the log key prominently. Compare them with the keys your agency
   publishes: the keys listed above come from this package itself and prove nothing on their own. Or give
   the published keys: `liuhen verify THIS.zip --keys PUBLISHED.json`.
3. By hand, without Liuhen (the formats are in Liuhen's docs/evidence-package.md and docs/protocol.md):
   a. check that the server key fingerprint is the one the agency publishes, and the seal in the zip
      comment against it;
   b. check every file's SHA-256 and size against export.json;
   c. check each manifest's signature with the recorder's key from trust.json;
   d. check each media file's SHA-256 against its manifest;
   e. check the chain: each manifest's prev is the SHA-256 of the previous manifest's payload, with no
      unexplained missing sequence numbers;
   f. check the dock and server receipts' signatures and the manifest and media hashes they name;
   g. check the checkpoint's signature with log.vkey, and each manifest's inclusion proof in proofs/
      against it.
"""  # noqa: RUF001
