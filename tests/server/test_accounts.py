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


def test_administrators_manage_users_and_everyone_their_tokens(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        admin = server.user("a.admin", "administrator")
        url = server.url
        new = {"username": "z.zhao", "password": "a long enough secret", "role": "supervisor", "unit": "U2"}
        created = admin.post(f"{url}/api/users", json=new, timeout=10)
        assert created.status_code == 201 and created.json()["role"] == "supervisor"
        assert admin.post(f"{url}/api/users", json=new, timeout=10).status_code == 409
        assert admin.post(f"{url}/api/users", json={**new, "username": "y", "password": "short"},
                          timeout=10).status_code == 400
        assert admin.post(f"{url}/api/users", json={**new, "role": "king"}, timeout=10).status_code == 400
        assert [u["username"] for u in admin.get(f"{url}/api/users", timeout=10).json()["users"]] == [
            "a.admin", "z.zhao"]

        zhao = sign_in(url, "z.zhao", "a long enough secret")
        made = zhao.post(f"{url}/api/tokens", json={"name": "report script", "days": 7}, timeout=10).json()
        bearer = {"Authorization": f"Bearer {made['token']}"}
        assert requests.get(f"{url}/api/me", headers=bearer, timeout=10).json()["name"] == "z.zhao"
        listed = zhao.get(f"{url}/api/tokens", timeout=10).json()["tokens"]
        assert [t["id"] for t in listed] == [made["id"]] and "token" not in listed[0]
        assert admin.delete(f"{url}/api/tokens/{made['id']}", timeout=10).status_code == 404  # not the admin's
        assert zhao.delete(f"{url}/api/tokens/{made['id']}", timeout=10).status_code == 200
        assert requests.get(f"{url}/api/me", headers=bearer, timeout=10).status_code == 401

        uid = created.json()["id"]
        assert admin.post(f"{url}/api/users/{uid}/disable", json={}, timeout=10).status_code == 400
        assert admin.post(f"{url}/api/users/{uid}/disable", json={"reason": "left the unit"},
                          timeout=10).status_code == 200
        assert zhao.get(f"{url}/api/me", timeout=10).status_code == 401
        assert requests.post(f"{url}/api/session", json={"username": "z.zhao", "password": "a long enough secret"},
                             timeout=10).status_code == 401
        assert admin.post(f"{url}/api/users/999/disable", json={"reason": "x"}, timeout=10).status_code == 404
