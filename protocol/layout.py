"""How a recorder store lays out files, so any verifier can find them.

    <store>/<device-id>/<seq, 12 digits>.manifest   the signed envelope
    <store>/<device-id>/<media.name>                the media file a manifest names

The folder name says whose the manifests are and the file name says where in
the chain each one sits; both are claims the verifier checks against the signed
manifest (replay from another device, reordering).
"""

from __future__ import annotations

MANIFEST_SUFFIX = ".manifest"
SEQ_DIGITS = 12


def manifest_name(seq: int) -> str:
    return f"{seq:0{SEQ_DIGITS}d}{MANIFEST_SUFFIX}"


def media_name(seq: int, extension: str) -> str:
    return f"{seq:0{SEQ_DIGITS}d}.{extension}"


def seq_from_manifest_name(name: str) -> int | None:
    """The sequence position a manifest file name claims, or None if it is not one."""
    stem = name[: -len(MANIFEST_SUFFIX)] if name.endswith(MANIFEST_SUFFIX) else ""
    if len(stem) == SEQ_DIGITS and stem.isdigit() and stem.isascii():
        return int(stem)
    return None


def is_media_name(name: str) -> bool:
    """True for a file named like a recorder's media file (`<seq>.<extension>`)."""
    stem, dot, ext = name.partition(".")
    return (len(stem) == SEQ_DIGITS and stem.isdigit() and stem.isascii() and bool(dot)
            and ext.isalnum() and ext.isascii() and not name.endswith(MANIFEST_SUFFIX))
