"""C2SP signed notes and tlog checkpoints: published vectors, round trips, tampering, malformed input."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.tlog.checkpoint import (
    CHECKPOINT_MALFORMED,
    CHECKPOINT_WRONG_ORIGIN,
    MAX_SIGNATURES,
    NOTE_BAD_SIGNATURE,
    NOTE_MALFORMED,
    NOTE_UNVERIFIED,
    VKEY_AMBIGUOUS,
    VKEY_MALFORMED,
    VKEY_UNSUPPORTED,
    Checkpoint,
    NoteError,
    NoteSigner,
    VerifierKey,
    decode_base64,
    is_valid_key_name,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_note,
    parse_vkey,
    sign_checkpoint,
    sign_note,
    verifier_key,
)
from protocol.tlog.merkle import leaf_hash

# ---------------------------------------------------------------------------------------------------------------
# golang.org/x/mod/sumdb/note note_test.go (TestSign, TestOpen, TestNewVerifier): the Go reference implementation's
# keys, text and signatures. The signer key is `PRIVATE+KEY+<name>+<key ID>+base64(0x01 || 32-byte seed)`.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
).encode()
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
).encode()

# c2sp.org/signed-note, section "Verifier keys", example.
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()

# A real checkpoint of the Go checksum database, with its log key: github.com/google/trillian-examples
# formats/log/checkpoint_test.go (TestSumDBNoteParsing).
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINT = (
    "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n"
    "\u2014 sum.golang.org "
    "Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n"
).encode()

# c2sp.org/tlog-checkpoint's example (its key is not published: syntax only).
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "\u2014 example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
).encode()


def _peter_signer() -> NoteSigner:
    name, id_hex, material = PETER_SKEY.removeprefix("PRIVATE+KEY+").split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 1 and id_hex == "c74f20a3"
    return NoteSigner.from_seed(name, raw[1:])


PETER = parse_vkey(PETER_VKEY)
ENOCH = parse_vkey(ENOCH_VKEY)


def _fails(code: str, fn: Callable[..., object], *args: object) -> NoteError:
    with pytest.raises(NoteError) as e:
        fn(*args)
    assert e.value.code == code, e.value
    return e.value


def test_go_reference_keys_and_signature_are_reproduced() -> None:
    assert PETER.name == "PeterNeumann" and PETER.key_id.hex() == "c74f20a3"
    assert str(PETER) == PETER_VKEY and str(ENOCH) == ENOCH_VKEY
    signer = _peter_signer()
    assert signer.verifier == PETER
    assert sign_note(TEXT, [signer]) == TEXT + b"\n" + PETER_SIG


def test_go_reference_note_opens() -> None:
    both = TEXT + b"\n" + PETER_SIG + ENOCH_SIG
    opened = open_note(both, [PETER])
    assert opened.text == TEXT
    assert [s.name for s in opened.verified] == ["PeterNeumann"]
    assert [s.name for s in opened.unknown] == ["EnochRoot"]
    opened = open_note(both, [ENOCH, PETER])
    assert [s.name for s in opened.verified] == ["PeterNeumann", "EnochRoot"] and not opened.unknown
    _fails(NOTE_UNVERIFIED, open_note, both, [])
    # A known key with a broken signature spoils the note, even next to a good one.
    broken = PETER_SIG[:60] + b"ABCD" + PETER_SIG[60:]
    _fails(NOTE_BAD_SIGNATURE, open_note, TEXT + b"\n" + broken, [PETER])
    _fails(NOTE_BAD_SIGNATURE, open_note, TEXT + b"\n" + ENOCH_SIG + broken, [PETER, ENOCH])
    # Same ID under another name, or same name with another ID: someone else's key, ignored.
    _fails(NOTE_UNVERIFIED, open_note, TEXT + b"\n" + PETER_SIG.replace(b"PeterNeumann", b"CarmenSandiego"), [PETER])
    _fails(NOTE_UNVERIFIED, open_note, TEXT + b"\n" + PETER_SIG.replace(b"x08g", b"xxxx"), [PETER])


@pytest.mark.parametrize(
    "message",
    [
        TEXT,
        TEXT + b"\n",
        TEXT + b"\n" + PETER_SIG[:-1],
        b"\x01" + TEXT + b"\n" + PETER_SIG,
        b"\xff" + TEXT + b"\n" + PETER_SIG,
        TEXT + b"\n" + PETER_SIG.replace(b"PeterNeumann", b"Bad Name")[:-1],
        TEXT + b"\n" + PETER_SIG + b"Unexpected line.\n",
        TEXT + b"\n" + PETER_SIG * (MAX_SIGNATURES + 1),
    ],
)
def test_go_reference_malformed_notes_are_rejected(message: bytes) -> None:
    _fails(NOTE_MALFORMED, open_note, message, [PETER])


def test_many_signatures_up_to_the_limit_are_accepted() -> None:
    assert len(open_note(TEXT + b"\n" + PETER_SIG * MAX_SIGNATURES, [PETER]).verified) == MAX_SIGNATURES


def test_go_reference_vkey_manglings_are_rejected() -> None:
    raw = PETER_VKEY.encode()
    for i in range(len(raw) + 1):
        for j in range(i + 1, len(raw) + 1):
            if (i, j) != (0, len(raw)):
                with pytest.raises(NoteError):
                    parse_vkey(raw[i:j].decode())
    for i in range(len(raw)):
        mangled = bytearray(raw)
        mangled[i] += 1
        with pytest.raises(NoteError):
            parse_vkey(mangled.decode())
    _fails(VKEY_MALFORMED, parse_vkey, "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    _fails(VKEY_UNSUPPORTED, parse_vkey, "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    _fails(VKEY_MALFORMED, parse_vkey, "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    _fails(VKEY_MALFORMED, parse_vkey, "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    _fails(VKEY_MALFORMED, parse_vkey, "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_c2sp_signed_note_example_verifies() -> None:
    key = parse_vkey(C2SP_VKEY)
    assert open_note(C2SP_NOTE, [key]).text == b"This is an example message.\n"
    _fails(NOTE_BAD_SIGNATURE, open_note, C2SP_NOTE.replace(b"This", b"this"), [key])


def test_real_sumdb_checkpoint_verifies() -> None:
    checkpoint, note = open_checkpoint(SUMDB_CHECKPOINT, "go.sum database tree", [parse_vkey(SUMDB_VKEY)])
    assert (checkpoint.origin, checkpoint.size) == ("go.sum database tree", 6476701)
    assert checkpoint.root == base64.b64decode("mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=")
    assert checkpoint.body() == note.text
    _fails(CHECKPOINT_WRONG_ORIGIN, open_checkpoint, SUMDB_CHECKPOINT, "sum.golang.org", [parse_vkey(SUMDB_VKEY)])


def test_c2sp_checkpoint_example_parses() -> None:
    note = parse_note(C2SP_CHECKPOINT)
    checkpoint = parse_checkpoint(note.text)
    assert (checkpoint.origin, checkpoint.size, checkpoint.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert [(s.name, len(s.signature)) for s in note.signatures] == [("example.com/behind-the-sofa", 64)]


# ---------------------------------------------------------------------------------------------------------------
# Our own checkpoints.

LOG = NoteSigner.from_seed("example.com/liuhen-log", bytes(range(32)))
WITNESS = NoteSigner.from_seed("witness.example", bytes(32))
CHECKPOINT = Checkpoint("example.com/liuhen-log", 5, leaf_hash(b"root stand-in"), ("ext one", "ext two"))


def test_checkpoint_round_trip() -> None:
    signed = sign_checkpoint(CHECKPOINT, [LOG, WITNESS])
    checkpoint, note = open_checkpoint(signed, CHECKPOINT.origin, [LOG.verifier])
    assert checkpoint == CHECKPOINT
    assert note.text == CHECKPOINT.body() and signed.startswith(note.text + b"\n")
    assert [s.name for s in note.verified] == [LOG.name] and [s.name for s in note.unknown] == [WITNESS.name]
    assert parse_vkey(str(LOG.verifier)) == LOG.verifier
    assert Checkpoint("o", 0, bytes(32)).body() == b"o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"


def test_every_tampered_byte_of_a_signed_checkpoint_is_rejected() -> None:
    signed = sign_checkpoint(CHECKPOINT, [LOG])
    for i in range(len(signed)):
        for mask in (0x01, 0x80):
            tampered = bytearray(signed)
            tampered[i] ^= mask
            with pytest.raises(NoteError):
                open_checkpoint(bytes(tampered), CHECKPOINT.origin, [LOG.verifier])


def test_signature_by_another_key_under_the_same_name_is_not_trusted() -> None:
    impostor = NoteSigner.from_seed(LOG.name, bytes([7]) * 32)
    _fails(NOTE_UNVERIFIED, open_checkpoint, sign_checkpoint(CHECKPOINT, [impostor]), CHECKPOINT.origin, [LOG.verifier])


def test_two_different_keys_with_the_same_name_and_id_are_ambiguous() -> None:
    twin = VerifierKey(LOG.name, LOG.verifier.key_id, bytes(32))
    signed = sign_checkpoint(CHECKPOINT, [LOG])
    _fails(VKEY_AMBIGUOUS, open_note, signed, [LOG.verifier, twin])
    assert open_note(signed, [LOG.verifier, LOG.verifier]).verified


GOOD_ROOT = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"o\n1\n{GOOD_ROOT}", "no final newline"),
        ("o\n1\n", "two lines"),
        (f"\n1\n{GOOD_ROOT}\n", "empty origin"),
        (f"o\n01\n{GOOD_ROOT}\n", "leading zero"),
        (f"o\n-1\n{GOOD_ROOT}\n", "negative"),
        (f"o\n+1\n{GOOD_ROOT}\n", "plus sign"),
        (f"o\n 1\n{GOOD_ROOT}\n", "space"),
        (f"o\n\uff11\n{GOOD_ROOT}\n", "fullwidth digit"),
        (f"o\n{2**64}\n{GOOD_ROOT}\n", "beyond 64 bits"),
        ("o\n1\nAAAA\n", "3-byte root"),
        (f"o\n1\n{GOOD_ROOT[:-2]}B=\n", "non-canonical base64"),
        (f"o\n1\n{GOOD_ROOT.rstrip('=')}\n", "unpadded base64"),
        (f"o\n1\n{GOOD_ROOT}\n\next\n", "empty extension line"),
        (f"o\r\n1\n{GOOD_ROOT}\n", "carriage return"),
        (f"o\t\n1\n{GOOD_ROOT}\n", "tab"),
    ],
)
def test_malformed_checkpoint_text_is_rejected(text: str, why: str) -> None:
    _fails(CHECKPOINT_MALFORMED, parse_checkpoint, text.encode())


def test_checkpoints_that_cannot_be_written_are_refused() -> None:
    for bad in (
        Checkpoint("two\nlines", 1, bytes(32)),
        Checkpoint("", 1, bytes(32)),
        Checkpoint("o", -1, bytes(32)),
        Checkpoint("o", 2**64, bytes(32)),
        Checkpoint("o", 1, bytes(31)),
        Checkpoint("o", 1, bytes(32), ("",)),
        Checkpoint("o", 1, bytes(32), ("a\nb",)),
    ):
        _fails(CHECKPOINT_MALFORMED, bad.body)


def test_a_signed_note_with_a_bad_checkpoint_body_is_rejected() -> None:
    signed = sign_note(b"if this is a valid checkpoint then I'll eat my hat\n", [LOG])
    _fails(CHECKPOINT_MALFORMED, open_checkpoint, signed, LOG.name, [LOG.verifier])


SIGNED = TEXT + b"\n" + PETER_SIG


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (SIGNED.replace(b"\n", b"\r\n"), "CRLF line ends"),
        (SIGNED.replace(b"\n\n", b"\n"), "no blank line"),
        (SIGNED.replace("\u2014".encode(), b"-"), "hyphen instead of em dash"),
        (SIGNED.replace("\u2014 ".encode(), "\u2014".encode()), "no space after the dash"),
        (SIGNED.replace(b"PeterNeumann ", b" "), "empty key name"),
        (SIGNED.replace(b"PeterNeumann", b"Peter+Neumann"), "plus in key name"),
        (SIGNED.replace(b"PeterNeumann", "Peter\u00a0Neumann".encode()), "no-break space in key name"),
        (SIGNED.replace(b"AM=\n", b"AN=\n"), "non-canonical base64"),
        (SIGNED.replace(b"AM=\n", b"AM\n"), "unpadded base64"),
        (SIGNED.replace(b"AM=\n", b"AM= \n"), "trailing space"),
        (TEXT + "\n\u2014 PeterNeumann x08gow==\n".encode(), "key ID without a signature"),
        (b"", "empty"),
        (b"\n\n", "no signature"),
        (SIGNED + b"\n", "trailing blank line"),
    ],
)
def test_malformed_notes_are_rejected(message: bytes, why: str) -> None:
    _fails(NOTE_MALFORMED, open_note, message, [PETER])


def test_text_that_cannot_be_signed_is_refused() -> None:
    for text in (b"no newline", b"", b"tab\there\n", b"\xc3\n"):
        _fails(NOTE_MALFORMED, sign_note, text, [LOG])
    _fails(NOTE_MALFORMED, sign_note, TEXT, [])
    blank_lines = b"blank\n\nlines inside\n\n"
    assert open_note(sign_note(blank_lines, [LOG]), [LOG.verifier]).text == blank_lines


def test_key_names_and_keys_are_validated() -> None:
    assert is_valid_key_name("example.com/log42")
    for bad in ("", "a b", "a+b", "a\u2003b", "a\nb", "a\x01b"):
        assert not is_valid_key_name(bad)
        _fails(VKEY_MALFORMED, verifier_key, bad, bytes(32))
    _fails(VKEY_MALFORMED, verifier_key, "ok", bytes(31))
    _fails(VKEY_MALFORMED, NoteSigner.from_seed, "ok", bytes(31))
    assert decode_base64("AAAA") == bytes(3)
    assert decode_base64("AAB=") is None and decode_base64("AA") is None and decode_base64("A A=") is None


_line = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(_line, st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32), st.lists(_line, max_size=3))
def test_random_checkpoints_round_trip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    assert open_checkpoint(sign_checkpoint(checkpoint, [LOG]), origin, [LOG.verifier])[0] == checkpoint


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_only_ever_raise_note_errors(data: bytes) -> None:
    for parse in (parse_note, parse_checkpoint):
        with contextlib.suppress(NoteError):
            parse(data)
    with contextlib.suppress(NoteError):
        parse_vkey(data.decode("utf-8", "replace"))
