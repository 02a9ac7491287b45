"""Run the case server for tests: as a real `liuhen server run` process, with its own data folder
and index, and make accounts with the real admin command."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

import requests

LIUHEN = [sys.executable, "-m", "liuhen"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, db_url: str, **settings: object) -> Path:
    lines = ["[server]", f'data_dir = "{folder / "data"}"', f'database = "{db_url}"', 'name = "srv-test"']
    for key, value in settings.items():
        lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    path = folder / "server.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def liuhen(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*LIUHEN, *args], input=stdin, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"liuhen {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


class ChildProcess:
    """A service run as a real child process (`proc`): stopped with SIGTERM (killed if it hangs), or killed."""

    proc: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class ServerProcess(ChildProcess):
    """`liuhen server run` on a free port; `url` is its base URL."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config.parent / "server.log"

    def init(self) -> str:
        return liuhen("server", "init", "--config", str(self.config)).stdout

    def start(self) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process writes it until stopped
        self.proc = subprocess.Popen([*LIUHEN, "server", "run", "--config", str(self.config), "--port",
                                      str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                requests.get(f"{self.url}/api/openapi.json", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"server did not start:\n{self.log_path.read_text()}")

def add_user(config: Path, username: str, role: str, *, unit: str | None = None, officer_no: str | None = None,
             password: str = "correct horse battery") -> None:
    args = ["admin", "user", "add", "--config", str(config), "--username", username, "--role", role,
            "--password-stdin"]
    if unit:
        args += ["--unit", unit]
    if officer_no:
        args += ["--officer-no", officer_no]
    liuhen(*args, stdin=password + "\n")


def sign_in(url: str, username: str, password: str = "correct horse battery") -> requests.Session:
    session = requests.Session()
    r = session.post(f"{url}/api/session", json={"username": username, "password": password}, timeout=10)
    r.raise_for_status()
    session.headers["Authorization"] = f"Bearer {r.json()['token']}"
    return session


def key_id_in(text: str) -> str:
    match = re.search(r"server key id: ([0-9a-f]{64})", text)
    assert match, text
    return match.group(1)


class InProcessServer:
    """The server application in a thread of this process, on a free port: fast, for API tests.
    `services` is the server's own, so tests can prepare the index directly."""

    def __init__(self, folder: Path, db_url: str, **settings: object) -> None:
        from server.app import open_services
        from server.cli import config_or_exit
        from server.identity import create_key

        self.config_path = write_config(folder, db_url, **settings)
        config = config_or_exit(self.config_path)
        create_key(config.key_path)
        self.services = open_services(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> InProcessServer:
        from aiohttp import web

        from server.app import make_app

        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> web.AppRunner:
            runner = web.AppRunner(make_app(self.services))
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            return runner

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._runner = self._loop.run_until_complete(serve())
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        started.wait(30)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def user(self, username: str, role: str, *, unit: str | None = None, officer_no: str | None = None,
             password: str = "correct horse battery") -> requests.Session:
        """Make a user directly in the index and return a session signed in as them (over HTTP)."""
        from server.accounts import create_user

        with self.services.db.write() as conn:
            create_user(conn, self.services.clock(), username, password, role, unit=unit, officer_no=officer_no)
        return sign_in(self.url, username, password)
