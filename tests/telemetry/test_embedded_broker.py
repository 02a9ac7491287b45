"""The embedded broker's own contract: a port of its choosing, kept across restarts; a clear error when taken."""

from __future__ import annotations

import socket
import threading

import pytest

from firmware.embedded_broker import EmbeddedBroker


def test_port_zero_picks_a_port_kept_across_restarts() -> None:
    broker = EmbeddedBroker()
    assert not broker.running
    with broker:
        port = broker.port
        assert port > 0 and broker.running and broker.url == f"mqtt://127.0.0.1:{port}"
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert not broker.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    with broker:
        assert broker.port == port


def broker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("amqtt-")}


def test_a_taken_port_is_an_error_and_leaves_nothing_running() -> None:
    threads = broker_threads()
    with EmbeddedBroker() as first:
        second = EmbeddedBroker(port=first.port)
        with pytest.raises(OSError):
            second.start()
        assert not second.running
    assert broker_threads() == threads


def test_bad_port() -> None:
    with pytest.raises(ValueError, match="0-65535"):
        EmbeddedBroker(port=70000)
