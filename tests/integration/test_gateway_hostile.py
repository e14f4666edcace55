"""The gateway under hostile input over real HTTP (uvicorn on a loopback port, versions from a real registry): the
shared corpus (``tests/hostile_corpus.py``) gets its 4xx, never a 5xx; refused admin calls change nothing; a
chunked upload without Content-Length is refused at the body limit without being read whole; and the process
stays healthy throughout."""
from __future__ import annotations

import select
import socket

import httpx
import pytest

from lifecycle.serving.limits import MAX_BODY_BYTES
from tests.conftest import ADMIN, ROW, live_lifecycle
from tests.hostile_corpus import CASES, FEEDBACK_TOKEN, PREDICT, TRAFFIC, WEIGHTS, Case, check_refusal, send

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """v1 (champion) and v2, trained briefly; the gateway serving them at ``WEIGHTS``, holding the corpus'
    feedback token."""
    runs = {"r1": {"epochs": 2, "overrides": {"seed": 1}}, "r2": {"epochs": 2, "overrides": {"seed": 2}}}
    with live_lifecycle(tmp_path_factory.mktemp("hostile"), runs, loaded=WEIGHTS, sync_seconds=0.2,
                        env={"LIFECYCLE_FEEDBACK_TOKEN": FEEDBACK_TOKEN}, dags=False) as live:
        yield live["server"]


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def healthy(client: httpx.Client) -> None:
    assert client.get("/readyz").status_code == 200
    assert client.post(PREDICT, json=ROW).status_code == 200


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request_gets_its_4xx_over_http_and_changes_nothing(client, case: Case):
    resp = send(client, case)

    check_refusal(case, resp)
    if case.admin:
        assert client.get(TRAFFIC, headers=ADMIN).json()["weights"] == WEIGHTS, case.id
    healthy(client)


def _request_head(length: str | None = None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
            .encode())


def _read_head(sock: socket.socket) -> bytes:
    """The response's status line and headers (whatever arrived before the server closed)."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
    except OSError:  # a reset after the response: what arrived before it is still read above
        pass
    return data


def test_a_chunked_upload_without_length_gets_413_without_being_read_whole(server, client):
    # Arrange: offer 256 MB in 64 KB chunks, no Content-Length; stop once the server answers or stops reading
    total, piece = 256 * 1024 * 1024, b" " * 65536
    frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_request_head() + b"1\r\n[\r\n")

        # Act
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(frame)  # blocks, then times out, once the server stops reading
                sent += len(piece)
        except OSError:  # timed out, or the server closed the connection: it stopped reading
            pass
        head = _read_head(sock)

    # Assert: refused at the limit, long before the upload's end (the socket buffers hold a few MB at most)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert b"connection: close" in head.lower()
    assert sent < total / 4, f"the server read {sent} bytes of a {total}-byte upload"
    healthy(client)


def test_a_content_length_over_the_limit_gets_413_before_the_body_is_sent(server, client):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_request_head(str(1024 * MAX_BODY_BYTES)) + b"[")
        head = _read_head(sock)  # the answer comes at once: the server does not wait for a 4 GB body
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    healthy(client)


def test_the_process_stays_healthy_after_the_whole_corpus(client):
    for case in CASES:
        try:
            status = send(client, case).status_code
        except httpx.TransportError as err:  # only an oversized upload may be cut off; never anything else
            assert case.status == 413, f"{case.id}: {err!r}"
            continue
        assert status < 500, case.id
    healthy(client)
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get(TRAFFIC, headers=ADMIN).json()["weights"] == WEIGHTS
    metrics = client.get("/metrics").text
    assert 'status="5' not in metrics
