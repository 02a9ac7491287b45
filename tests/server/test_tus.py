"""The tus upload endpoint as gateways see it: tuspy uploads and resumes, and the protocol's answers one by one."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from aiohttp import web
from tusclient import client
from tusclient.storage.filestorage import FileStorage

from server.tus import CompletedUpload, TusUploads

T = TypeVar("T")

PREFIX = "/api/uploads/"
MAX_SIZE = 1 << 20
HOUR_NS = 3600 * 10**9
TOKENS = {"Bearer alice-token": "alice", "Bearer bob-token": "bob"}
ALICE = {"Tus-Resumable": "1.0.0", "Authorization": "Bearer alice-token"}
BOB = {**ALICE, "Authorization": "Bearer bob-token"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Server:
    """TusUploads alone in an aiohttp app on a free port, its event loop in a background thread."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.now_ns = 1_700_000_000 * 10**9
        self.hook_fails = False
        self.completed: list[CompletedUpload] = []
        self.uploads = TusUploads(
            staging,
            max_size=MAX_SIZE,
            expires_after_ns=HOUR_NS,
            authorize=self._authorize,
            on_complete=self._on_complete,
            now_ns=lambda: self.now_ns,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        app = web.Application()
        self.uploads.add_routes(app.router, PREFIX)
        self.runner = web.AppRunner(app)
        self.run(self.runner.setup())
        self.run(web.TCPSite(self.runner, "127.0.0.1", 0).start())
        self.origin = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self.endpoint = self.origin + PREFIX

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def close(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()

    async def _authorize(self, request: web.Request) -> str:
        principal = TOKENS.get(request.headers.get("Authorization", ""))
        if principal is None:
            raise web.HTTPUnauthorized(text="unknown token")
        return principal

    async def _on_complete(self, upload: CompletedUpload) -> dict[str, str]:
        if self.hook_fails:
            raise RuntimeError("evidence index unavailable")
        self.completed.append(upload)
        file_sha256 = sha256_hex(upload.data_path.read_bytes())
        # Whenever tus hashed the body on the way in, that hash must be the file's, whatever happened meanwhile.
        assert upload.sha256 in (None, file_sha256)
        return {"Upload-Result": file_sha256}

    def create(self, length: int, metadata: str | None = None, headers: dict[str, str] = ALICE) -> str:
        extra = {"Upload-Length": str(length)} | ({"Upload-Metadata": metadata} if metadata is not None else {})
        response = requests.post(self.endpoint, headers=headers | extra)
        assert response.status_code == 201, response.text
        return self.origin + response.headers["Location"]

    def upload_id(self, url: str) -> str:
        return url.rsplit("/", 1)[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "staging")
    yield running
    running.close()


def patch(url: str, offset: int, body: Any, headers: dict[str, str] = ALICE, **extra: str) -> requests.Response:
    return requests.patch(url, data=body, headers=headers | OCTETS | {"Upload-Offset": str(offset)} | extra)


def offset_of(url: str) -> int:
    response = requests.head(url, headers=ALICE)
    assert response.status_code == 200
    return int(response.headers["Upload-Offset"])


def wait_until_idle(url: str, offset: int) -> requests.Response:
    """An empty PATCH at ``offset``, retried while another request still holds the upload."""
    deadline = time.monotonic() + 5
    while (response := patch(url, offset, b"")).status_code == 409 and "busy" in response.text:
        assert time.monotonic() < deadline, "upload stayed locked"
        time.sleep(0.01)
    return response


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(5 * 40_000 + 123)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    return path, data


# The tuspy client


def test_tuspy_uploads_a_multi_chunk_file_with_checksums(server: Server, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    tus = client.TusClient(server.endpoint, headers={"Authorization": "Bearer alice-token"})
    uploader = tus.uploader(
        file_path=str(path), chunk_size=40_000, metadata={"filename": "clip.mp4", "device": "REC-0001"},
        upload_checksum=True,
    )
    uploader.upload()

    assert uploader.offset == len(data)
    assert uploader.request.response_headers["upload-result"] == sha256_hex(data)
    [completed] = server.completed
    assert completed.data_path.read_bytes() == data
    assert completed.principal == "alice" and completed.length == len(data)
    assert completed.metadata == {"filename": b"clip.mp4", "device": b"REC-0001"}
    head = requests.head(uploader.url, headers=ALICE)
    assert head.headers["Upload-Result"] == sha256_hex(data)  # a client that lost the last response gets it here


def test_tuspy_resumes_with_the_same_url(server: Server, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    tus = client.TusClient(server.endpoint, headers={"Authorization": "Bearer alice-token"})
    first = tus.uploader(file_path=str(path), chunk_size=40_000, upload_checksum=True)
    first.upload_chunk()
    first.upload_chunk()
    url = first.url
    del first

    second = tus.uploader(file_path=str(path), url=url, chunk_size=40_000, upload_checksum=True)
    assert second.offset == 80_000  # asked the server, continues where the first stopped
    second.upload()
    assert server.completed[0].data_path.read_bytes() == data
    assert [c.id for c in server.completed] == [server.upload_id(url)]


def test_tuspy_resumes_from_its_url_storage(server: Server, data_file: tuple[Path, bytes], tmp_path: Path) -> None:
    path, data = data_file
    tus = client.TusClient(server.endpoint, headers={"Authorization": "Bearer alice-token"})
    storage = FileStorage(str(tmp_path / "urls.json"))
    first = tus.uploader(file_path=str(path), chunk_size=40_000, store_url=True, url_storage=storage)
    first.upload_chunk()
    url = first.url
    storage.close()
    del first

    storage = FileStorage(str(tmp_path / "urls.json"))  # as after a gateway restart
    second = tus.uploader(file_path=str(path), chunk_size=40_000, store_url=True, url_storage=storage)
    assert second.url == url and second.offset == 40_000
    second.upload()
    storage.close()
    assert server.completed[0].data_path.read_bytes() == data
    assert len(list(server.staging.glob("*.info"))) == 1  # no second upload was created


# Core protocol


def test_options_advertises_the_server(server: Server) -> None:
    response = requests.options(server.endpoint)  # no Tus-Resumable needed, no auth either
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Extension"] == "creation,checksum,expiration,termination"
    assert response.headers["Tus-Max-Size"] == str(MAX_SIZE)
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256", "md5"}
    assert "Tus-Resumable" not in response.headers


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0"])
def test_other_protocol_versions_get_412(server: Server, version: str | None) -> None:
    url = server.create(10)
    headers = {"Authorization": "Bearer alice-token"} | ({"Tus-Resumable": version} if version else {})
    for response in (
        requests.post(server.endpoint, headers=headers | {"Upload-Length": "5"}),
        requests.head(url, headers=headers),
        requests.patch(url, data=b"x", headers=headers | OCTETS | {"Upload-Offset": "0"}),
        requests.delete(url, headers=headers),
    ):
        assert response.status_code == 412
        assert response.headers["Tus-Version"] == "1.0.0"
        assert response.headers["Tus-Resumable"] == "1.0.0"
    assert offset_of(url) == 0


def test_creation_and_head(server: Server) -> None:
    response = requests.post(
        server.endpoint, headers=ALICE | {"Upload-Length": "100", "Upload-Metadata": "filename Y2xpcC5tcDQ=,urgent"}
    )
    assert response.status_code == 201
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Location"].startswith(PREFIX)
    upload_id = response.headers["Location"][len(PREFIX):]
    assert len(upload_id) == 32 and int(upload_id, 16) >= 0
    assert response.headers["Upload-Expires"] == "Tue, 14 Nov 2023 23:13:20 GMT"  # created + 1 h, RFC 9110 date

    url = server.origin + response.headers["Location"]
    assert patch(url, 0, b"x" * 30).status_code == 204
    head = requests.head(url, headers=ALICE)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "30" and head.headers["Upload-Length"] == "100"
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Tus-Resumable"] == "1.0.0"
    assert head.headers["Upload-Metadata"] == "filename Y2xpcC5tcDQ=,urgent"
    assert head.headers["Upload-Expires"] == "Tue, 14 Nov 2023 23:13:20 GMT"
    assert "Upload-Result" not in head.headers


def test_patch_returns_the_new_offset_and_the_result_at_the_end(server: Server) -> None:
    url = server.create(10)
    first = patch(url, 0, b"0123")
    assert first.status_code == 204 and first.headers["Upload-Offset"] == "4"
    assert first.headers["Tus-Resumable"] == "1.0.0" and "Upload-Expires" in first.headers
    last = patch(url, 4, b"456789")
    assert last.status_code == 204 and last.headers["Upload-Offset"] == "10"
    assert last.headers["Upload-Result"] == sha256_hex(b"0123456789")
    again = patch(url, 10, b"")  # a client that lost the last response may PATCH nothing to see the end again
    assert again.status_code == 204 and again.headers["Upload-Result"] == sha256_hex(b"0123456789")
    assert len(server.completed) == 1


def test_the_hook_gets_the_hash_of_a_body_received_by_this_process(server: Server) -> None:
    data = os.urandom(300_000)
    url = server.create(len(data))
    assert patch(url, 0, data[:100_000]).status_code == 204
    assert patch(url, 100_000, data[100_000:]).status_code == 204
    second = server.create(len(data))
    assert patch(second, 0, data[:100_000]).status_code == 204
    server.uploads._hashes.clear()  # as after a restart: the first bytes came before this process
    assert patch(second, 100_000, data[100_000:]).status_code == 204
    assert [upload.sha256 for upload in server.completed] == [sha256_hex(data), None]


def test_wrong_offset_gets_409(server: Server) -> None:
    url = server.create(10)
    patch(url, 0, b"abc")
    for offset in (0, 2, 4):
        response = patch(url, offset, b"def")
        assert response.status_code == 409
        assert "Upload-Offset is" in response.text
    assert offset_of(url) == 3


def test_wrong_content_type_gets_415(server: Server) -> None:
    url = server.create(10)
    headers = ALICE | {"Upload-Offset": "0", "Content-Type": "application/octet-stream"}
    response = requests.patch(url, data=b"abc", headers=headers)
    assert response.status_code == 415 and "application/offset+octet-stream" in response.text
    assert offset_of(url) == 0


@pytest.mark.parametrize("offset", [None, "-1", "x", "1.0"])
def test_bad_upload_offset_gets_400(server: Server, offset: str | None) -> None:
    url = server.create(10)
    headers = ALICE | OCTETS | ({"Upload-Offset": offset} if offset is not None else {})
    response = requests.patch(url, data=b"abc", headers=headers)
    assert response.status_code == 400 and "Upload-Offset" in response.text


def test_too_large_gets_413(server: Server) -> None:
    response = requests.post(server.endpoint, headers=ALICE | {"Upload-Length": str(MAX_SIZE + 1)})
    assert response.status_code == 413 and "maximum" in response.text
    assert requests.post(server.endpoint, headers=ALICE | {"Upload-Length": str(MAX_SIZE)}).status_code == 201

    url = server.create(100)
    patch(url, 0, b"a" * 60)
    overrun = patch(url, 60, b"b" * 41)  # declared by Content-Length
    assert overrun.status_code == 413
    assert offset_of(url) == 60
    streamed = patch(url, 60, iter([b"c" * 30, b"d" * 30]))  # chunked: found out while receiving
    assert streamed.status_code == 413 and "discarded" in streamed.text
    assert offset_of(url) == 60
    assert (server.staging / f"{server.upload_id(url)}.part").read_bytes() == b"a" * 60
    assert patch(url, 60, iter([b"e" * 20, b"f" * 20])).status_code == 204
    assert server.completed[0].data_path.read_bytes() == b"a" * 60 + b"e" * 20 + b"f" * 20


@pytest.mark.parametrize("length", [None, "", "-1", "abc", "1e3", "+5", "0x5", "1" * 30])
def test_bad_upload_length_gets_400(server: Server, length: str | None) -> None:
    headers = ALICE | ({"Upload-Length": length} if length is not None else {})
    response = requests.post(server.endpoint, headers=headers)
    assert response.status_code == 400 and "Upload-Length" in response.text


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ("name YQ==,name Yg==", "twice"),
        ("name a!b=", "not valid base64"),
        ("name YQ", "not valid base64"),  # padding is required
        ("name YQ== Yg==", "not valid base64"),
        ("name YQ==,,other Yg==", "empty"),
        ("name YQ==,", "empty"),
        ("n\u00e4me YQ==", "not printable ASCII"),
    ],
)
def test_bad_metadata_gets_400_naming_the_problem(server: Server, metadata: str, problem: str) -> None:
    headers = ALICE | {"Upload-Length": "5"}
    response = requests.post(server.endpoint, headers=headers | {"Upload-Metadata": metadata.encode()})
    assert response.status_code == 400
    assert "Upload-Metadata" in response.text and problem in response.text


def test_metadata_reaches_the_hook_decoded(server: Server) -> None:
    url = server.create(1, "filename 5qGI5Lu2LmJpbg==, empty,case Q0FTRS0x")
    patch(url, 0, b"!")
    assert server.completed[0].metadata == {"filename": "案件.bin".encode(), "empty": b"", "case": b"CASE-1"}


# Checksum extension


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_checksums_are_verified(server: Server, algorithm: str) -> None:
    url = server.create(8)
    good = b64(hashlib.new(algorithm, b"abcd").digest())
    assert patch(url, 0, b"abcd", **{"Upload-Checksum": f"{algorithm} {good}"}).status_code == 204

    bad = b64(hashlib.new(algorithm, b"wxyz").digest())
    response = patch(url, 4, b"efgh", **{"Upload-Checksum": f"{algorithm} {bad}"})
    assert response.status_code == 460 and "mismatch" in response.text
    assert offset_of(url) == 4
    assert (server.staging / f"{server.upload_id(url)}.part").read_bytes() == b"abcd"


@pytest.mark.parametrize(
    ("checksum", "problem"),
    [("crc32 AAAAAA==", "not supported"), ("sha1", "bytes long"), ("sha1 YQ==", "bytes long"),
     ("sha1 !!!", "not valid base64")],
)
def test_bad_checksum_headers_get_400(server: Server, checksum: str, problem: str) -> None:
    url = server.create(8)
    response = patch(url, 0, b"abcd", **{"Upload-Checksum": checksum})
    assert response.status_code == 400 and problem in response.text
    assert offset_of(url) == 0


# Expiration and termination


def test_expired_uploads_answer_410_and_are_swept(server: Server) -> None:
    incomplete = server.create(10)
    patch(incomplete, 0, b"abc")
    finalized = server.create(3)
    patch(finalized, 0, b"xyz")
    server.now_ns += HOUR_NS - 1
    assert offset_of(incomplete) == 3
    assert asyncio.run(server.uploads.sweep_expired()) == 0

    server.now_ns += 1
    assert requests.head(incomplete, headers=ALICE).status_code == 410
    response = patch(incomplete, 3, b"def")
    assert response.status_code == 410 and "expired" in response.text
    assert requests.head(finalized, headers=ALICE).status_code == 200  # complete uploads do not expire as such

    assert asyncio.run(server.uploads.sweep_expired()) == 2
    assert list(server.staging.iterdir()) == []
    assert requests.head(incomplete, headers=ALICE).status_code == 404
    assert requests.head(finalized, headers=ALICE).status_code == 404


def test_forget_removes_a_finalized_upload(server: Server) -> None:
    url = server.create(3)
    patch(url, 0, b"xyz")
    upload_id = server.upload_id(url)
    assert server.uploads.principal_of(upload_id) == "alice"
    assert server.run(server.uploads.forget(upload_id)) is True
    assert server.run(server.uploads.forget(upload_id)) is False
    assert server.uploads.principal_of(upload_id) is None
    assert requests.head(url, headers=ALICE).status_code == 404
    assert list(server.staging.iterdir()) == []


def test_delete_terminates_an_upload(server: Server) -> None:
    url = server.create(10)
    patch(url, 0, b"abc")
    response = requests.delete(url, headers=ALICE)
    assert response.status_code == 204 and response.headers["Tus-Resumable"] == "1.0.0"
    assert list(server.staging.iterdir()) == []
    assert requests.head(url, headers=ALICE).status_code == 404
    assert patch(url, 3, b"def").status_code == 404
    assert requests.delete(url, headers=ALICE).status_code == 404
    assert list(server.staging.iterdir()) == []  # those 404s left no lock files behind


# Who may see an upload


def test_another_principal_gets_404(server: Server) -> None:
    url = server.create(10)
    patch(url, 0, b"abc")
    assert requests.head(url, headers=BOB).status_code == 404
    assert patch(url, 3, b"def", headers=BOB).status_code == 404
    assert requests.delete(url, headers=BOB).status_code == 404
    assert requests.head(server.endpoint + "0" * 32, headers=ALICE).status_code == 404
    assert requests.head(server.endpoint + "not-an-id", headers=ALICE).status_code == 404
    assert offset_of(url) == 3


def test_authorization_errors_pass_through(server: Server) -> None:
    url = server.create(10)
    for response in (
        requests.post(server.endpoint, headers=ALICE | {"Authorization": "Bearer nope", "Upload-Length": "1"}),
        patch(url, 0, b"abc", headers=ALICE | {"Authorization": "Bearer nope"}),
    ):
        assert response.status_code == 401 and response.text == "unknown token"
        assert response.headers["Tus-Resumable"] == "1.0.0"


# Completion and finalization


def test_zero_length_upload_completes_at_creation(server: Server) -> None:
    response = requests.post(server.endpoint, headers=ALICE | {"Upload-Length": "0", "Upload-Metadata": "note"})
    assert response.status_code == 201
    assert response.headers["Upload-Result"] == sha256_hex(b"")
    [completed] = server.completed
    assert completed.length == 0 and completed.metadata == {"note": b""}
    head = requests.head(server.origin + response.headers["Location"], headers=ALICE)
    assert head.headers["Upload-Offset"] == "0" and head.headers["Upload-Result"] == sha256_hex(b"")


def write_crashed_upload(staging: Path, upload_id: str, data: bytes) -> None:
    """What a server killed after fsyncing the last byte but before finalizing leaves on disk."""
    (staging / f"{upload_id}.part").write_bytes(data)
    info = {"length": len(data), "metadata": {"filename": b64(b"late.mp4")}, "principal": "alice",
            "created_ns": 1_700_000_000 * 10**9, "expires_ns": 1_700_000_000 * 10**9 + HOUR_NS}
    (staging / f"{upload_id}.info").write_text(json.dumps(info))


def test_head_finalizes_an_upload_completed_before_a_crash(server: Server) -> None:
    write_crashed_upload(server.staging, "a" * 32, b"evidence")
    head = requests.head(server.endpoint + "a" * 32, headers=ALICE)
    assert head.status_code == 200 and head.headers["Upload-Result"] == sha256_hex(b"evidence")
    assert server.completed[0].metadata == {"filename": b"late.mp4"}
    assert json.loads((server.staging / f"{'a' * 32}.info").read_text())["result"] == {
        "Upload-Result": sha256_hex(b"evidence")
    }
    requests.head(server.endpoint + "a" * 32, headers=ALICE)
    assert len(server.completed) == 1  # stored, not re-run


def test_finalize_pending_finalizes_all_completed_uploads(server: Server) -> None:
    write_crashed_upload(server.staging, "b" * 32, b"one")
    write_crashed_upload(server.staging, "c" * 32, b"two")
    unfinished = server.create(10)
    patch(unfinished, 0, b"abc")
    assert asyncio.run(server.uploads.finalize_pending()) == 2
    assert sorted(c.id for c in server.completed) == ["b" * 32, "c" * 32]
    assert asyncio.run(server.uploads.finalize_pending()) == 0
    head = requests.head(server.endpoint + "c" * 32, headers=ALICE)
    assert head.headers["Upload-Result"] == sha256_hex(b"two")


def test_a_failing_hook_gives_500_and_head_retries_it(server: Server) -> None:
    url = server.create(6)
    patch(url, 0, b"abc")
    server.hook_fails = True
    response = patch(url, 3, b"def")
    assert response.status_code == 500 and "RuntimeError" in response.text and "HEAD" in response.text
    assert requests.head(url, headers=ALICE).status_code == 500
    server.now_ns += 2 * HOUR_NS
    assert asyncio.run(server.uploads.sweep_expired()) == 0  # its evidence is not yet accepted: kept
    assert asyncio.run(server.uploads.finalize_pending()) == 0

    server.hook_fails = False
    head = requests.head(url, headers=ALICE)
    assert head.status_code == 200 and head.headers["Upload-Result"] == sha256_hex(b"abcdef")
    assert head.headers["Upload-Offset"] == "6" and "Upload-Expires" not in head.headers


def test_a_failing_hook_on_a_zero_length_upload_still_gives_its_location(server: Server) -> None:
    server.hook_fails = True
    response = requests.post(server.endpoint, headers=ALICE | {"Upload-Length": "0"})
    assert response.status_code == 500
    server.hook_fails = False
    head = requests.head(server.origin + response.headers["Location"], headers=ALICE)
    assert head.status_code == 200 and head.headers["Upload-Result"] == sha256_hex(b"")


# Concurrency and interrupted bodies


def test_concurrent_patches_to_one_upload_do_not_interleave(server: Server, tmp_path: Path) -> None:
    other = Server(server.staging)  # a second server process sharing the staging directory
    try:
        url = server.create(60_000)
        release = threading.Event()

        def slow_body() -> Iterator[bytes]:
            yield b"a" * 20_000
            release.wait(5)
            yield b"b" * 20_000

        results: list[requests.Response] = []
        first = threading.Thread(target=lambda: results.append(patch(url, 0, slow_body())))
        first.start()
        deadline = time.monotonic() + 5
        while offset_of(url) < 20_000:
            assert time.monotonic() < deadline
            time.sleep(0.01)

        other_url = url.replace(server.origin, other.origin)
        for offset in (0, 20_000):
            response = patch(other_url, offset, b"c" * 20_000)
            assert response.status_code == 409 and "busy" in response.text
        release.set()
        first.join(5)
        assert results[0].status_code == 204 and results[0].headers["Upload-Offset"] == "40000"
        assert patch(other_url, 40_000, b"d" * 20_000).status_code == 204
        assert other.completed[0].data_path.read_bytes() == b"a" * 20_000 + b"b" * 20_000 + b"d" * 20_000
    finally:
        other.close()


def send_partial_patch(server: Server, url: str, body: bytes, declared: int, checksum: str | None = None) -> None:
    """Start a PATCH of ``declared`` bytes, send ``body``, wait until the server stored some of it, hang up."""
    path = url.removeprefix(server.origin)
    head = [f"PATCH {path} HTTP/1.1", f"Host: {server.origin[7:]}", "Tus-Resumable: 1.0.0",
            "Authorization: Bearer alice-token", "Content-Type: application/offset+octet-stream",
            "Upload-Offset: 0", f"Content-Length: {declared}"]
    if checksum:
        head.append(f"Upload-Checksum: {checksum}")
    part = server.staging / f"{server.upload_id(url)}.part"
    port = int(server.origin.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        deadline = time.monotonic() + 5
        while part.stat().st_size == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_a_dropped_connection_keeps_what_arrived(server: Server) -> None:
    url = server.create(100_000)
    body = os.urandom(50_000)
    send_partial_patch(server, url, body, declared=100_000)
    offset = int(wait_until_idle(url, offset_of(url)).headers["Upload-Offset"])
    assert 0 < offset <= 50_000
    assert (server.staging / f"{server.upload_id(url)}.part").read_bytes() == body[:offset]
    assert patch(url, offset, b"x" * (100_000 - offset)).status_code == 204


def test_a_dropped_connection_discards_a_chunk_that_cannot_be_verified(server: Server) -> None:
    url = server.create(100_000)
    checksum = "sha1 " + b64(hashlib.sha1(b"\0" * 100_000).digest())
    send_partial_patch(server, url, b"\0" * 50_000, declared=100_000, checksum=checksum)
    assert wait_until_idle(url, 0).headers["Upload-Offset"] == "0"
    assert (server.staging / f"{server.upload_id(url)}.part").read_bytes() == b""


def test_sweep_clears_what_a_crash_during_a_deletion_left(server: Server) -> None:
    live = server.create(10)
    for leftover in (f"{'d' * 32}.part", f"{'e' * 32}.lock", f"{'f' * 32}.info.tmp"):
        (server.staging / leftover).write_bytes(b"left")
    assert asyncio.run(server.uploads.sweep_expired()) == 0
    assert sorted(path.name for path in server.staging.iterdir()) == sorted(
        f"{server.upload_id(live)}{suffix}" for suffix in (".info", ".part", ".lock")
    )
    assert offset_of(live) == 0
