"""The gateway under hostile input, in process (Starlette's TestClient on ``create_app``, a stand-in model): every
request of the shared corpus (``tests/hostile_corpus.py``) gets its 4xx, never a 5xx, with a bounded JSON error;
refused admin calls change nothing; the body limit stops reading a chunked upload; out-of-spec rows are refused,
or served and flagged when the spec says so. The same corpus runs over real HTTP in
``tests/integration/test_gateway_hostile.py``."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

from lifecycle.paths import StatePaths
from lifecycle.serving.app import Gateway, create_app
from lifecycle.serving.limits import MAX_BODY_BYTES, show, show_names, too_deep
from tests.conftest import ADMIN, ROW, TOKEN
from tests.hostile_corpus import (
    CASES,
    FEEDBACK,
    FEEDBACK_TOKEN,
    MODEL,
    PREDICT,
    SHADOW,
    TRAFFIC,
    WEIGHTS,
    Case,
    check_refusal,
    send,
)


class StandIn:
    """A model that scores every row 0.25 (no registry, no torch)."""

    threshold = 0.5

    def proba(self, rows):
        return np.full(len(rows), 0.25)


def make_gateway(spec, root: Path) -> Gateway:
    gateway = Gateway([spec], StatePaths(root), token="t" * 40, loader=lambda s, v: StandIn(),
                      feedback_token=FEEDBACK_TOKEN)
    gateway.token = TOKEN  # the corpus' admin headers carry the suite's token, whatever its length

    async def arrange():
        for version in WEIGHTS:
            await gateway.load(MODEL, version)
        await gateway.set_weights(MODEL, WEIGHTS, "test: arrange")

    asyncio.run(arrange())
    return gateway


@pytest.fixture(scope="module")
def served(spec, tmp_path_factory):
    gateway = make_gateway(spec, tmp_path_factory.mktemp("hostile") / "state")
    client = TestClient(create_app(gateway))  # no `with`: no lifespan, so no registry sync
    yield gateway, client
    gateway.logs.close()


def traffic(client) -> dict[str, int]:
    return client.get(TRAFFIC, headers=ADMIN).json()["weights"]


def test_the_corpus_is_large_and_covers_every_route():
    assert len(CASES) >= 60
    paths = {c.path.split("?")[0] for c in CASES}
    assert {PREDICT, FEEDBACK, TRAFFIC, SHADOW} <= paths
    assert any(p.endswith("/evidence") for p in paths)
    assert any("/versions/" in p for p in paths) and any(p.endswith("/stats") for p in paths)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request_gets_its_4xx_and_changes_nothing(served, case: Case):
    # Arrange
    _, client = served

    # Act
    resp = send(client, case)

    # Assert
    check_refusal(case, resp)
    if case.admin:
        assert traffic(client) == WEIGHTS, case.id
        assert client.get(SHADOW, headers=ADMIN).json()["shadow"] is None, case.id
    assert client.post(PREDICT, json=ROW).status_code == 200


def test_after_the_whole_corpus_a_healthy_request_still_succeeds(served):
    _, client = served
    for case in CASES:
        assert send(client, case).status_code < 500, case.id
    resp = client.post(PREDICT, json=[ROW, {**ROW, "customer_id": "C0000001"}, {**ROW, "customer_id": 7}])
    assert resp.status_code == 200 and len(resp.json()["predictions"]) == 3
    assert traffic(client) == WEIGHTS
    assert client.get("/readyz").status_code == 200
    assert 'status="5' not in client.get("/metrics").text


def _asgi_post(app, chunks, headers):
    """POST ``chunks`` to ``app`` as a chunked upload; -> (status, response headers, body, bytes it consumed)."""
    consumed = 0
    pending = list(chunks)
    sent: list[dict] = []

    async def receive():
        nonlocal consumed
        if not pending:
            return {"type": "http.disconnect"}
        chunk = pending.pop(0)
        consumed += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send_(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": PREDICT, "raw_path": PREDICT.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send_))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, consumed


def test_a_chunked_upload_is_refused_at_the_limit_without_being_read_whole(served):
    # Arrange: 64 MB offered in 64 KB chunks, no Content-Length
    gateway, _ = served
    chunk = b" " * 65536
    chunks = [b"["] + [chunk] * 1024 + [b"]"]

    # Act
    status, headers, body, consumed = _asgi_post(create_app(gateway), chunks,
                                                 {"Transfer-Encoding": "chunked", "Content-Type": "application/json"})

    # Assert: refused once past the limit, the rest never asked for, and the connection closed
    assert status == 413 and b"exceeds" in body
    assert MAX_BODY_BYTES < consumed <= MAX_BODY_BYTES + len(chunk) + 1
    assert headers[b"connection"] == b"close"


def test_a_content_length_over_the_limit_is_refused_before_reading(served):
    gateway, _ = served
    status, headers, _body, consumed = _asgi_post(create_app(gateway), [b"{}"],
                                                 {"Content-Length": str(MAX_BODY_BYTES + 1)})
    assert status == 413 and consumed == 0 and headers[b"connection"] == b"close"


def test_a_body_in_many_chunks_under_the_limit_is_served(served):
    gateway, _ = served
    data = orjson.dumps(ROW)
    status, _, body, _ = _asgi_post(create_app(gateway), [data[i:i + 7] for i in range(0, len(data), 7)],
                                    {"Transfer-Encoding": "chunked"})
    assert status == 200 and orjson.loads(body)["predictions"][0]["probability"] == 0.25


def test_anonymous_callers_do_not_learn_the_served_models(served):
    _, client = served
    anonymous = client.post("/v1/models/nope/predict", json=ROW).json()["error"]
    admin = client.post("/v1/models/nope/predict", json=ROW, headers=ADMIN).json()["error"]
    assert anonymous == "unknown model 'nope'"
    assert admin == "unknown model 'nope'; served: ['credit_default']"


def test_out_of_spec_rows_are_refused_naming_the_row_and_field(served):
    _, client = served
    batch = [ROW] * 5 + [{**ROW, "region": "atlantis"}]
    resp = client.post(PREDICT, json=batch)
    assert resp.status_code == 422
    assert resp.json()["error"] == ("row 5: region 'atlantis' is out of spec: not one of "
                                    "['east', 'north', 'south', 'west']")
    one = client.post(PREDICT, json={**ROW, "age": 120}).json()["error"]
    assert one == "row: age 120 is out of spec: outside [18, 100]"


def test_flag_mode_serves_out_of_spec_rows_marks_them_in_the_log_and_counts_them(spec, tmp_path):
    # Arrange
    from lifecycle.serving.predlog import read_log

    flagging = spec.model_copy(update={"serving": spec.serving.model_copy(update={"out_of_spec": "flag"})})
    gateway = make_gateway(flagging, tmp_path / "state")
    client = TestClient(create_app(gateway))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    try:
        # Act
        batch = [ROW, {**ROW, "age": 120, "region": "atlantis"}, ROW, {**ROW, "age": 1e300}]
        resp = client.post(PREDICT, json=batch)
        clean = client.post(PREDICT, json=ROW)
        never = [client.post(PREDICT, json={**ROW, "age": bad}) for bad in ("old", None, True)]
        overflow = client.post(PREDICT, content=b'{"age": 1e309}')
        long = client.post(PREDICT, json={**ROW, "region": "r" * 257})
        gateway.logs.flush()
        logged = read_log(tmp_path / "state" / "serving", "predictions", MODEL, start,
                          dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
        metrics = client.get("/metrics").text
    finally:
        gateway.logs.close()

    # Assert: served, flagged per row in the answer and the log, counted per field; wrong types never served
    assert resp.status_code == 200, resp.text
    preds = resp.json()["predictions"]
    assert [p.get("out_of_spec") for p in preds] == [None, ["age", "region"], None, ["age"]]
    by_id = {r["request_id"]: r for r in logged}
    assert by_id[resp.json()["request_id"]]["out_of_spec"] == [{"row": 1, "fields": ["age", "region"]},
                                                               {"row": 3, "fields": ["age"]}]
    assert "out_of_spec" not in by_id[clean.json()["request_id"]]
    top = spec.data.feature("age").max  # out-of-range numbers are scored (and logged) clipped to the range
    assert [r["age"] for r in by_id[resp.json()["request_id"]]["rows"]] == [ROW["age"], top, ROW["age"], top]
    assert 'gateway_out_of_spec_rows_total{field="age",model="credit_default"} 2.0' in metrics
    assert 'gateway_out_of_spec_rows_total{field="region",model="credit_default"} 1.0' in metrics
    assert [r.status_code for r in never] == [422, 422, 422]
    assert overflow.status_code == 422 and long.status_code == 422


def test_flag_mode_is_a_spec_setting_defaulting_to_reject(spec):
    from pydantic import ValidationError

    from lifecycle.spec import ServingConfig

    assert spec.serving.out_of_spec == "reject"
    assert ServingConfig(out_of_spec="flag").out_of_spec == "flag"
    with pytest.raises(ValidationError):
        ServingConfig(out_of_spec="ignore")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("x" * 1000, "'" + "x" * 64 + "…", id="long-string-cut"),
        pytest.param("\ud800\x00", "'\\ud800\\x00'", id="surrogate-and-control-escaped"),
        pytest.param(list(range(10**5)), "list of 100000 items", id="list-by-size"),
        pytest.param({"a": 1}, "dict of 1 item", id="dict-by-size"),
        pytest.param(1e300, "1e+300", id="number"),
    ],
)
def test_echoes_of_client_values_are_bounded(value, expected):
    assert show(value).startswith(expected) and len(show(value)) <= 70


def test_names_and_depth_are_bounded_without_recursion():
    assert show_names(["a" * 100] * 50).endswith("… (50 in all)]") and len(show_names(["a" * 100] * 50)) < 400
    deep = []
    for _ in range(200_000):
        deep = [deep]
    assert too_deep(deep) and not too_deep([[{"a": [1]}]]) and not too_deep("[[[[")


@pytest.mark.parametrize(("length", "status"), [("9" * 5000, 413), ("12abc", 400), ("٣", 400)],
                         ids=["5000-digits", "not-a-number", "arabic-indic-digit"])
def test_a_content_length_that_is_not_a_plain_size_is_refused(served, length, status):
    gateway, _ = served
    code, _, body, consumed = _asgi_post(create_app(gateway), [b"{}"], {"Content-Length": length})
    assert code == status and consumed == 0 and len(body) < 1024


def test_the_readme_table_of_bad_input_is_the_corpus():
    """``docs/hostile-input.md`` is generated from the corpus (``python -m tests.hostile_corpus``): never stale."""
    from tests.hostile_corpus import markdown

    doc = (Path(__file__).parents[2] / "docs" / "hostile-input.md").read_text()
    assert markdown() in doc, "docs/hostile-input.md is stale: python -m tests.hostile_corpus > docs/hostile-input.md"
