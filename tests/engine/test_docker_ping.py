"""The probe's ping without docker-py (console/engine/docker_ping.py): the machine's real engine answers; a socket
nothing listens on, one that accepts and never answers, one that answers an error or not HTTP at all each fail in one
line, within the timeout, saying whether the connection was made."""
import socket
import threading
import time

import pytest

from console.engine.docker_ping import DEFAULT_SOCKET, PingFailed, ping, socket_path


def test_the_machines_engine_answers(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert socket_path(None) == DEFAULT_SOCKET
    ping(DEFAULT_SOCKET, 10)


def test_which_urls_are_unix_sockets(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/docker-h2.sock")
    assert socket_path(None) == socket_path("") == "/run/docker-h2.sock"
    assert socket_path("unix:///tmp/x.sock") == "/tmp/x.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2376")
    assert socket_path(None) is None
    for url in ("tcp://127.0.0.1:2375", "ssh://deploy@h2", "unix://relative.sock", "npipe:////./pipe/docker"):
        assert socket_path(url) is None, url


@pytest.fixture
def server(tmp_path):
    """A unix socket that answers each connection with `answer` (None: accepts and never answers)."""
    path = str(tmp_path / "engine.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)
    state = {"answer": None, "held": []}

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            if state["answer"] is None:
                state["held"].append(conn)
                continue
            conn.recv(1024)
            conn.sendall(state["answer"])
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield path, state
    srv.close()
    for conn in state["held"]:
        conn.close()


def test_nothing_listening_fails_at_once_without_a_connection(tmp_path):
    with pytest.raises(PingFailed) as e:
        ping(str(tmp_path / "none.sock"), 10)
    assert not e.value.connected and "none.sock" in str(e.value) and "\n" not in str(e.value)


def test_an_engine_that_never_answers_fails_within_the_timeout(server):
    path, _ = server
    t0 = time.monotonic()
    with pytest.raises(PingFailed) as e:
        ping(path, 0.5)
    assert time.monotonic() - t0 < 5
    assert e.value.connected and "did not answer within 0.5 s" in str(e.value)


@pytest.mark.parametrize("answer, says", [
    (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", "answered 500 Internal Server Error"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", "not HTTP"),
    (b"", "not HTTP"),
])
def test_an_error_or_a_stranger_answering_is_a_failure(server, answer, says):
    path, state = server
    state["answer"] = answer
    with pytest.raises(PingFailed) as e:
        ping(path, 5)
    assert e.value.connected and says in str(e.value), str(e.value)


def test_an_ok_answer_is_up(server):
    path, state = server
    state["answer"] = b"HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\nContent-Length: 2\r\n\r\nOK"
    ping(path, 5)
