"""Accounts end to end against a real server process: the admin command makes users, they sign in,
tokens work until signed out, bad input gets clear errors."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.server.harness import InProcessServer, ServerProcess, add_user, liuhen, sign_in, write_config


def test_sign_in_tokens_and_sign_out(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url)
    server = ServerProcess(config)
    server.init()
    add_user(config, "li.wei", "officer", unit="U1", officer_no="100001")
    with server.start():
        r = requests.get(f"{server.url}/api/me", timeout=10)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        bad = requests.post(f"{server.url}/api/session", json={"username": "li.wei", "password": "wrong password!"},
                            timeout=10)
        assert bad.status_code == 401
        assert requests.post(f"{server.url}/api/session", json={"username": "li.wei"}, timeout=10).status_code == 400
        assert requests.post(f"{server.url}/api/session", data="x", timeout=10).status_code == 415
        session = sign_in(server.url, "li.wei")
        me = session.get(f"{server.url}/api/me", timeout=10).json()
        assert me["role"] == "officer" and me["officer_no"] == "100001"
        token = liuhen("admin", "user", "token", "--config", str(config), "--username", "li.wei",
                       "--name", "script").stdout.strip()
        assert requests.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {token}"},
                            timeout=10).status_code == 200
        assert session.delete(f"{server.url}/api/session", timeout=10).status_code == 200
        assert session.get(f"{server.url}/api/me", timeout=10).status_code == 401


def test_admin_refuses_bad_users(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url)
    ServerProcess(config).init()
    add_user(config, "a.admin", "administrator")
    short = liuhen("admin", "user", "add", "--config", str(config), "--username", "b", "--role", "auditor",
                   "--password-stdin", stdin="short\n", check=False)
    assert short.returncode == 2 and "12 characters" in short.stderr
    again = liuhen("admin", "user", "add", "--config", str(config), "--username", "a.admin", "--role", "auditor",
                   "--password-stdin", stdin="long enough password\n", check=False)
    assert again.returncode == 2 and "exists already" in again.stderr
    role = liuhen("admin", "user", "add", "--config", str(config), "--username", "c", "--role", "king",
                  "--password-stdin", stdin="long enough password\n", check=False)
    assert role.returncode == 2 and "invalid choice" in role.stderr


def test_in_process_server_and_openapi(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        session = server.user("w.auditor", "auditor")
        assert session.get(f"{server.url}/api/me", timeout=10).json()["role"] == "auditor"
        spec = requests.get(f"{server.url}/api/openapi.json", timeout=10).json()
        assert spec["openapi"].startswith("3.") and "/api/session" in spec["paths"]
