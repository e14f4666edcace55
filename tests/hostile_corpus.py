"""Hostile requests to the gateway, and what each must get: one corpus for the in-process test
(``tests/unit/test_gateway_hostile.py``) and the one over real HTTP (``tests/integration/test_gateway_hostile.py``).

The gateway under test serves ``credit_default`` with versions 1 and 2 loaded and weights ``{"1": 100, "2": 0}``
(:data:`WEIGHTS`) and no shadow pair; every case must get its 4xx (never a 5xx) with a JSON ``{"error": str}`` body
under 1 KB, and no admin case may change the weights or set a shadow pair. :func:`send` issues a case with any httpx client (Starlette's TestClient is one).

Feedback cases carry the feedback token :data:`FEEDBACK_TOKEN` (:data:`FEEDER`) unless they test the credential: the
gateway under test must hold it (``Gateway(feedback_token=...)`` or ``$LIFECYCLE_FEEDBACK_TOKEN``). Its rate limit is
the spec's default (``serving.feedback_rate`` 1000 labels/s, ``feedback_burst`` 10,000): the one case that spends it
(``feedback-rate-limited``) posts valid labels, which no other case does, so it leaves the other cases' answers alone.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import ADMIN, ROW, TOKEN

MODEL = "credit_default"
PREDICT = f"/v1/models/{MODEL}/predict"
FEEDBACK = f"/v1/models/{MODEL}/feedback"
TRAFFIC = f"/admin/models/{MODEL}/traffic"
VERSIONS = f"/admin/models/{MODEL}/versions"
STATS = f"/admin/models/{MODEL}/stats"
SHADOW = f"/admin/models/{MODEL}/shadow"
EVIDENCE = f"/admin/models/{MODEL}/evidence"
WEIGHTS = {"1": 100, "2": 0}
MAX_ERROR_BODY = 1024
RID = "0123456789abcdef0123456789abcdef"  # looks like a request id; never issued
FEEDBACK_TOKEN = "test-feedback-token-0123456789abcdef"
FEEDER = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}

_NONE = object()


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    json: Any = _NONE  # a JSON body (httpx encodes it, Content-Type application/json; None: no body)
    content: bytes | None = None  # raw bytes (no Content-Type unless headers say)
    chunks: Callable[[], Iterator[bytes]] | None = None  # a chunked upload without Content-Length
    headers: dict[str, str] = field(default_factory=dict)
    fragment: str | None = None  # must appear in the error message
    absent: str | None = None  # must not appear in the error message
    repeat: int = 1  # sent this many times in a row (a rate limit); the last answer is the one checked

    @property
    def admin(self) -> bool:
        return self.path.startswith("/admin/")


def send(client: httpx.Client, case: Case) -> httpx.Response:
    kw: dict[str, Any] = {"headers": case.headers}
    if case.json is not _NONE:
        kw["json"] = case.json
    elif case.content is not None:
        kw["content"] = case.content
    elif case.chunks is not None:
        kw["content"] = case.chunks()
    for _ in range(case.repeat - 1):
        client.request(case.method, case.path, **kw)
    return client.request(case.method, case.path, **kw)


def nested(depth: int, leaf: Any = 1) -> Any:
    out = leaf
    for _ in range(depth):
        out = [out]
    return out


def chunked(total: int, chunk: int = 64 * 1024) -> Callable[[], Iterator[bytes]]:
    """A generator factory: ``total`` bytes of JSON whitespace-padded array, in ``chunk``-sized pieces."""
    def gen() -> Iterator[bytes]:
        sent = 0
        yield b"["
        while sent < total:
            yield b" " * chunk
            sent += chunk
        yield b"]"
    return gen


def raw_row(**raw: bytes) -> bytes:
    """:data:`ROW` as JSON bytes, with the named fields' values replaced by raw JSON text (e.g. ``b"1e309"``)."""
    return b"{" + b", ".join(json.dumps(k).encode() + b": " + (raw[k] if k in raw else json.dumps(v).encode())
                             for k, v in ROW.items()) + b"}"


def _batch_with(index: int, n: int, **bad: Any) -> list[dict[str, Any]]:
    rows = [dict(ROW) for _ in range(n)]
    rows[index].update(bad)
    return rows


def P(id: str, status: int, body: Any = _NONE, **kw: Any) -> Case:
    return Case(id, "POST", PREDICT, status, json=body, **kw)


def FB(id: str, status: int, body: Any, headers: dict[str, str] | None = None, **kw: Any) -> Case:
    return Case(id, "POST", FEEDBACK, status, json=body, headers=FEEDER if headers is None else headers, **kw)


def PUT(id: str, status: int, body: Any = _NONE, headers: dict[str, str] | None = None, **kw: Any) -> Case:
    return Case(id, "PUT", TRAFFIC, status, json=body, headers=ADMIN if headers is None else headers, **kw)


def SH(id: str, status: int, body: Any = _NONE, headers: dict[str, str] | None = None, **kw: Any) -> Case:
    return Case(id, "PUT", SHADOW, status, json=body, headers=ADMIN if headers is None else headers, **kw)


def W(id: str, weights: Any, fragment: str | None = None, status: int = 422) -> Case:
    return PUT(id, status, {"weights": weights, "reason": "hostile"}, fragment=fragment)


LONG = "x" * 100_000
CASES: list[Case] = [
    # ---- bytes that are not a JSON document
    P("invalid-utf8-value", 400, content=b'{"region": "\xff\xfe"}', fragment="malformed JSON"),
    P("invalid-utf8-key", 400, content=b'{"\xc3\x28": 1}', fragment="malformed JSON"),
    P("lone-surrogate-escape", 400, content=b'{"region": "\\ud800"}', fragment="malformed JSON"),
    P("empty-body", 400, content=b"", fragment="malformed JSON"),
    P("whitespace-body", 400, content=b"   \n", fragment="malformed JSON"),
    P("truncated-json", 400, content=b'{"age": 41,', fragment="malformed JSON"),
    P("nan-literal", 400, content=b'{"age": NaN}', fragment="NaN and Infinity"),
    P("infinity-literal", 400, content=b'{"age": Infinity}', fragment="NaN and Infinity"),
    P("minus-infinity-literal", 400, content=b'{"age": -Infinity}', fragment="NaN and Infinity"),
    P("content-type-text", 415, content=b"{}", headers={"Content-Type": "text/plain"}, fragment="Content-Type"),
    P("content-type-form", 415, content=b"age=41", headers={"Content-Type": "application/x-www-form-urlencoded"},
      fragment="Content-Type"),
    P("content-type-multipart", 415, content=b"--x--", headers={"Content-Type": "multipart/form-data; boundary=x"},
      fragment="Content-Type"),
    # ---- size and depth
    Case("chunked-10mb-no-length", "POST", PREDICT, 413, chunks=chunked(10 * 1024 * 1024), fragment="exceeds"),
    P("content-length-5mb", 413, content=b" " * (5 * 1024 * 1024), fragment="exceeds"),
    P("deep-nesting-100k", 400, content=b"[" * 100_000 + b"]" * 100_000, fragment="nested deeper"),
    P("deep-nesting-40", 400, nested(40), fragment="nested deeper"),
    P("deep-nesting-in-feature", 400, {**ROW, "age": nested(40)}, fragment="nested deeper"),
    P("deep-nesting-in-extra-field", 400, {**ROW, "zodiac": nested(33)}, fragment="nested deeper"),
    P("oversized-batch", 413, [ROW] * 1001, fragment="exceeds the limit of 1000"),
    # ---- numbers
    P("number-overflow-1e309", 422, content=raw_row(age=b"1e309"), fragment="age must be finite"),
    P("number-overflow-minus-1e309", 422, content=raw_row(income=b"-1e309"), fragment="income must be finite"),
    P("number-overflow-in-batch", 422, content=b"[" + b", ".join([raw_row()] * 3 + [raw_row(age=b"1e309")]) + b"]",
      fragment="row 3: age must be finite"),
    P("number-overflow-bare", 422, content=b'{"age": 1e309}', fragment="missing feature(s)"),
    P("huge-integer-literal", 422, content=raw_row(age=b"9" * 400), fragment="age must be finite"),
    P("age-1e300-in-1000-row-batch", 422, _batch_with(537, 1000, age=1e300), fragment="row 537: age"),
    P("age-1e300", 422, {**ROW, "age": 1e300}, fragment="age"),
    P("age-below-min", 422, {**ROW, "age": 17}, fragment="out of spec"),
    P("income-negative", 422, {**ROW, "income": -1.0}, fragment="income"),
    P("utilization-above-max", 422, {**ROW, "credit_utilization": 1.5}, fragment="credit_utilization"),
    P("integer-beyond-64-bits", 422, {**ROW, "loan_amount": 123456789012345678901234567890}, fragment="loan_amount"),
    P("bool-for-number", 422, {**ROW, "age": True}, fragment="age must be a number, got bool"),
    P("string-for-number", 422, {**ROW, "age": "41"}, fragment="age must be a number, got str"),
    P("list-for-number", 422, {**ROW, "age": [41]}, fragment="age must be a number, got list"),
    P("object-for-number", 422, {**ROW, "age": {"v": 41}}, fragment="age must be a number"),
    P("null-not-nullable", 422, {**ROW, "age": None}, fragment="age must not be null"),
    # ---- categories and strings
    P("unknown-category", 422, {**ROW, "region": "atlantis"}, fragment="region"),
    P("category-wrong-case", 422, {**ROW, "home_ownership": "rent"}, fragment="home_ownership"),
    P("category-100k-chars", 422, {**ROW, "loan_purpose": LONG}, fragment="loan_purpose"),
    P("number-for-category", 422, {**ROW, "region": 3}, fragment="region must be a string"),
    P("null-category", 422, {**ROW, "region": None}, fragment="region must not be null"),
    # ---- fields and shape
    P("extra-field", 422, {**ROW, "zodiac": "leo"}, fragment="unknown field(s) ['zodiac']"),
    P("10k-extra-long-fields", 422, {**ROW, **{f"{i}{LONG[:200]}": i for i in range(10_000)}},
      fragment="unknown field(s)"),
    P("missing-field", 422, {k: v for k, v in ROW.items() if k != "income"}, fragment="missing feature(s)"),
    P("empty-object", 422, {}, fragment="missing feature(s)"),
    P("id-float", 422, {**ROW, "customer_id": 1.5}, fragment="customer_id must be a string or an integer"),
    P("id-bool", 422, {**ROW, "customer_id": True}, fragment="customer_id"),
    P("id-object", 422, {**ROW, "customer_id": {"a": 1}}, fragment="customer_id"),
    P("id-null", 422, {**ROW, "customer_id": None}, fragment="customer_id"),
    P("id-too-long", 422, {**ROW, "customer_id": "C" * 129}, fragment="at most 128"),
    P("empty-batch", 400, [], fragment="empty batch"),
    P("body-string", 400, "hello", fragment="body must be a JSON object"),
    P("body-number", 400, 42, fragment="body must be a JSON object"),
    P("body-null", 400, content=b"null", fragment="body must be a JSON object"),
    P("row-not-object", 422, [ROW, [1, 2]], fragment="row 1: must be an object"),
    # ---- routes
    Case("unknown-model-anonymous", "POST", "/v1/models/nope/predict", 404, json=ROW, fragment="unknown model",
         absent="served"),
    Case("unknown-model-long-name", "POST", f"/v1/models/{'n' * 2000}/predict", 404, json=ROW,
         fragment="unknown model", absent="served"),
    Case("unknown-model-with-admin-token", "POST", "/v1/models/nope/predict", 404, json=ROW, headers=ADMIN,
         fragment="served: ['credit_default']"),
    Case("predict-wrong-method", "GET", PREDICT, 405),
    Case("unknown-route", "GET", "/v2/everything", 404),
    # ---- feedback
    FB("feedback-id-int", 422, {"request_id": 7, "label": 1}, fragment="request_id"),
    FB("feedback-id-empty", 422, {"request_id": "", "label": 1}, fragment="request_id"),
    FB("feedback-id-100k", 422, {"request_id": LONG, "label": 1}, fragment="at most 128"),
    FB("feedback-id-list", 422, {"request_id": [RID], "label": 1}, fragment="request_id"),
    FB("feedback-label-7", 422, {"request_id": RID, "label": 7}, fragment="label must be 0 or 1"),
    FB("feedback-label-bool", 422, {"request_id": RID, "label": True}, fragment="label must be 0 or 1"),
    FB("feedback-label-string", 422, {"request_id": RID, "label": "1"}, fragment="label must be 0 or 1"),
    FB("feedback-label-float", 422, {"request_id": RID, "label": 1.0}, fragment="label must be 0 or 1"),
    FB("feedback-label-missing", 422, {"request_id": RID}, fragment="label must be 0 or 1"),
    FB("feedback-labels-empty", 422, {"request_id": RID, "labels": []}, fragment="label must be 0 or 1"),
    FB("feedback-labels-2000", 422, {"request_id": RID, "labels": [0] * 2000}, fragment="at most 1000"),
    FB("feedback-extra-key", 422, {"request_id": RID, "label": 1, "x": 1}, fragment="expected"),
    FB("feedback-string", 422, "hello", fragment="expected"),
    Case("feedback-null", "POST", FEEDBACK, 422, content=b"null", headers=FEEDER, fragment="expected"),
    FB("feedback-bad-item-in-batch", 422, [{"request_id": RID, "label": 0}, {"request_id": RID, "label": 2}],
       fragment="item 1"),
    Case("feedback-label-overflow", "POST", FEEDBACK, 422, content=b'{"request_id": "r", "label": 1e309}',
         headers=FEEDER, fragment="label must be 0 or 1"),
    FB("feedback-deep", 400, nested(50), fragment="nested deeper"),
    # ---- feedback: the credential (checked before the body is read) and the per-client rate limit
    FB("feedback-no-token", 401, {"request_id": RID, "label": 1}, headers={}, fragment="feedback token"),
    FB("feedback-wrong-token", 401, {"request_id": RID, "label": 1}, headers={"Authorization": "Bearer wrong"},
       fragment="feedback token"),
    FB("feedback-token-without-scheme", 401, {"request_id": RID, "label": 1},
       headers={"Authorization": FEEDBACK_TOKEN}, fragment="feedback token"),
    FB("feedback-basic-scheme", 401, {"request_id": RID, "label": 1},
       headers={"Authorization": f"Basic {FEEDBACK_TOKEN}"}, fragment="feedback token"),
    FB("feedback-token-with-suffix", 401, {"request_id": RID, "label": 1},
       headers={"Authorization": f"Bearer {FEEDBACK_TOKEN}x"}, fragment="feedback token"),
    Case("feedback-no-token-unknown-model", "POST", "/v1/models/nope/feedback", 401,
         json={"request_id": RID, "label": 1}, fragment="feedback token", absent="unknown model"),
    Case("feedback-no-token-malformed", "POST", FEEDBACK, 401, content=b"{not json", fragment="feedback token"),
    FB("feedback-more-labels-than-the-burst", 413, [{"request_id": RID, "labels": [0] * 1000}] * 11,
       fragment="exceed serving.feedback_burst"),
    FB("feedback-rate-limited", 429, [{"request_id": RID, "labels": [1] * 1000}] * 10, repeat=3,
       fragment="rate limit"),
    # ---- admin: the token
    PUT("admin-no-token", 401, {"weights": {"1": 0, "2": 100}}, headers={}),
    PUT("admin-wrong-token", 401, {"weights": {"1": 0, "2": 100}}, headers={"Authorization": "Bearer wrong"}),
    PUT("admin-token-without-scheme", 401, {"weights": {"1": 0, "2": 100}}, headers={"Authorization": TOKEN}),
    PUT("admin-basic-scheme", 401, {"weights": {"1": 0, "2": 100}}, headers={"Authorization": f"Basic {TOKEN}"}),
    Case("admin-load-no-token", "POST", f"{VERSIONS}/2/load", 401),
    Case("admin-unload-wrong-token", "DELETE", f"{VERSIONS}/2", 401, headers={"Authorization": "Bearer x"}),
    Case("admin-stats-no-token", "GET", f"{STATS}?since=0", 401),
    # ---- admin: the traffic body
    PUT("traffic-weights-list", 400, {"weights": [0, 100]}, fragment="weights must be an object"),
    PUT("traffic-null", 400, content=b"null", fragment="got null"),
    PUT("traffic-string", 400, "weights", fragment="body must be"),
    PUT("traffic-list", 400, [{"weights": {"2": 100}}], fragment="body must be"),
    PUT("traffic-number", 400, 100, fragment="body must be"),
    PUT("traffic-weights-missing", 400, {"reason": "x"}, fragment="weights missing"),
    PUT("traffic-extra-field", 400, {"weights": {"2": 100}, "force": True}, fragment="unknown field(s)"),
    PUT("traffic-deep", 400, {"weights": nested(40)}, fragment="nested deeper"),
    PUT("traffic-content-type-text", 415, content=b'{"weights": {"2": 100}}',
        headers={**ADMIN, "Content-Type": "text/plain"}),
    PUT("traffic-invalid-utf8", 400, content=b'{"weights": {"\xff": 100}}', fragment="malformed JSON"),
    W("weights-empty", {}, "non-empty"),
    W("weight-float", {"1": 50.5, "2": 49.5}, "must be an integer"),
    W("weight-negative", {"1": 101, "2": -1}, "between 0 and 100"),
    W("weight-over-100", {"2": 101}, "between 0 and 100"),
    W("weight-string", {"2": "100"}, "must be an integer"),
    W("weight-bool", {"2": True}, "must be an integer"),
    W("weight-null", {"2": None}, "must be an integer"),
    PUT("weight-overflow", 422, content=b'{"weights": {"2": 1e309}}',
        headers={**ADMIN, "Content-Type": "application/json"}, fragment="must be an integer"),
    W("weights-not-summing-to-100", {"1": 60, "2": 30}, "must sum to 100"),
    W("weights-unloaded-version", {"1": 50, "9": 50}, "not loaded"),
    W("version-id-leading-zero", {"01": 100}, "plain ASCII digits"),
    W("version-id-arabic-indic-digit", {"٣": 100}, "plain ASCII digits"),
    W("version-id-decimal", {"1.0": 100}, "plain ASCII digits"),
    W("version-id-negative", {"-1": 100}, "plain ASCII digits"),
    W("version-id-empty", {"": 100}, "plain ASCII digits"),
    W("version-id-zero", {"0": 100}, "plain ASCII digits"),
    W("version-id-100k-digits", {"1" * 100_000: 100}, "plain ASCII digits"),
    W("version-ids-10k-unloaded", {str(i): 0 for i in range(3, 10_003)} | {"1": 100}, "not loaded"),
    PUT("reason-int", 422, {"weights": {"2": 100}, "reason": 5}, fragment="reason must be a string"),
    PUT("reason-object", 422, {"weights": {"2": 100}, "reason": {"why": "x"}}, fragment="reason must be a string"),
    PUT("reason-501-chars", 422, {"weights": {"2": 100}, "reason": "r" * 501}, fragment="at most 500"),
    # ---- admin: version ids in the path
    Case("load-version-leading-zero", "POST", f"{VERSIONS}/01/load", 400, headers=ADMIN, fragment="plain ASCII"),
    Case("load-version-arabic-indic-digit", "POST", f"{VERSIONS}/%D9%A3/load", 400, headers=ADMIN,
         fragment="plain ASCII"),
    Case("load-version-decimal", "POST", f"{VERSIONS}/1.0/load", 400, headers=ADMIN, fragment="plain ASCII"),
    Case("load-version-negative", "POST", f"{VERSIONS}/-1/load", 400, headers=ADMIN, fragment="plain ASCII"),
    Case("load-version-zero", "POST", f"{VERSIONS}/0/load", 400, headers=ADMIN, fragment="plain ASCII"),
    Case("load-version-empty", "POST", f"{VERSIONS}//load", 404, headers=ADMIN),
    Case("load-version-2000-digits", "POST", f"{VERSIONS}/{'1' * 2000}/load", 400, headers=ADMIN,
         fragment="plain ASCII"),
    Case("unload-version-leading-zero", "DELETE", f"{VERSIONS}/02", 400, headers=ADMIN, fragment="plain ASCII"),
    Case("unload-version-with-traffic", "DELETE", f"{VERSIONS}/1", 409, headers=ADMIN, fragment="still has weight"),
    Case("unload-version-not-loaded", "DELETE", f"{VERSIONS}/7", 404, headers=ADMIN, fragment="not loaded"),
    # ---- admin: stats
    Case("stats-since-word", "GET", f"{STATS}?since=yesterday", 400, headers=ADMIN, fragment="since"),
    Case("stats-since-nan", "GET", f"{STATS}?since=nan", 400, headers=ADMIN, fragment="since"),
    Case("stats-since-inf", "GET", f"{STATS}?since=inf", 400, headers=ADMIN, fragment="since"),
    Case("stats-since-overflow", "GET", f"{STATS}?since=1e999", 400, headers=ADMIN, fragment="since"),
    Case("stats-since-arabic-indic-digit", "GET", f"{STATS}?since=%D9%A3", 400, headers=ADMIN, fragment="since"),
    Case("stats-since-underscores", "GET", f"{STATS}?since=1_000", 400, headers=ADMIN, fragment="since"),
    Case("stats-since-10k-digits", "GET", f"{STATS}?since={'9' * 10_000}", 400, headers=ADMIN, fragment="since"),
    Case("admin-unknown-model-with-token", "GET", "/admin/models/nope/traffic", 404, headers=ADMIN,
         fragment="served: ['credit_default']"),
    # ---- admin: the shadow pair (mirroring) and its paired evidence; no case may set a pair
    SH("shadow-no-token", 401, {"champion": "1", "challenger": "2"}, headers={}),
    Case("shadow-delete-wrong-token", "DELETE", SHADOW, 401, headers={"Authorization": "Bearer x"}),
    SH("shadow-body-list", 400, ["1", "2"], fragment="body must be"),
    SH("shadow-body-null", 400, content=b"null", fragment="got null"),
    SH("shadow-challenger-missing", 400, {"champion": "1"}, fragment="challenger missing"),
    SH("shadow-extra-field", 400, {"champion": "1", "challenger": "2", "weights": {"2": 100}},
       fragment="unknown field(s)"),
    SH("shadow-deep", 400, {"champion": nested(40), "challenger": "2"}, fragment="nested deeper"),
    SH("shadow-same-version", 422, {"champion": "1", "challenger": "1"}, fragment="two different versions"),
    SH("shadow-version-int", 422, {"champion": 1, "challenger": "2"}, fragment="champion must be a version id"),
    SH("shadow-version-leading-zero", 422, {"champion": "1", "challenger": "02"}, fragment="plain ASCII digits"),
    SH("shadow-version-arabic-indic-digit", 422, {"champion": "1", "challenger": "٢"}, fragment="plain ASCII digits"),
    SH("shadow-version-100k-digits", 422, {"champion": "1", "challenger": "2" * 100_000},
       fragment="plain ASCII digits"),
    SH("shadow-version-not-loaded", 422, {"champion": "1", "challenger": "9"}, fragment="not loaded"),
    SH("shadow-sample-zero", 422, {"champion": "1", "challenger": "2", "sample": 0}, fragment="sample must be"),
    SH("shadow-sample-over-1", 422, {"champion": "1", "challenger": "2", "sample": 1.01}, fragment="sample must be"),
    SH("shadow-sample-string", 422, {"champion": "1", "challenger": "2", "sample": "0.5"}, fragment="sample must be"),
    SH("shadow-sample-bool", 422, {"champion": "1", "challenger": "2", "sample": True}, fragment="sample must be"),
    SH("shadow-sample-overflow", 422, content=b'{"champion": "1", "challenger": "2", "sample": 1e309}',
       headers={**ADMIN, "Content-Type": "application/json"}, fragment="sample must be"),
    SH("shadow-stale-revision", 409, {"champion": "1", "challenger": "2", "expected_revision": 10**9},
       fragment="changed since revision"),
    SH("shadow-revision-string", 400, {"champion": "1", "challenger": "2", "expected_revision": "3"},
       fragment="expected_revision"),
    Case("evidence-no-token", "GET", f"{EVIDENCE}?challenger=2", 401),
    Case("evidence-challenger-missing", "GET", f"{EVIDENCE}?since=0", 400, headers=ADMIN, fragment="challenger"),
    Case("evidence-challenger-leading-zero", "GET", f"{EVIDENCE}?challenger=02", 400, headers=ADMIN,
         fragment="challenger"),
    Case("evidence-challenger-10k-digits", "GET", f"{EVIDENCE}?challenger={'2' * 10_000}", 400, headers=ADMIN,
         fragment="challenger"),
    Case("evidence-since-nan", "GET", f"{EVIDENCE}?challenger=2&since=nan", 400, headers=ADMIN, fragment="since"),
    Case("evidence-never-shadowed", "GET", f"{EVIDENCE}?challenger=2", 404, headers=ADMIN,
         fragment="no paired evidence"),
]

assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"


def check_refusal(case: Case, resp: httpx.Response) -> None:
    """The response ``case`` must get: its status, a bounded JSON error naming the problem."""
    assert resp.status_code == case.status, f"{case.id}: {resp.status_code} {resp.text[:300]}"
    assert len(resp.content) < MAX_ERROR_BODY, f"{case.id}: error body of {len(resp.content)} bytes"
    assert resp.headers["content-type"].startswith("application/json"), case.id
    error = resp.json()["error"]
    assert isinstance(error, str) and error, case.id
    if case.fragment:
        assert case.fragment in error, f"{case.id}: {error!r}"
    if case.absent:
        assert case.absent not in error, f"{case.id}: {error!r}"
    if case.status == 429:
        assert int(resp.headers["retry-after"]) >= 1, case.id


def markdown() -> str:
    """The corpus as the README's "bad input -> answer" tables: a summary per route, then every case."""
    from collections import Counter

    def route(case: Case) -> str:
        return case.path.split("?")[0].replace(MODEL, "{model}").rstrip("/")

    summary = Counter((case.method, _route_group(route(case)), case.status) for case in CASES)
    lines = ["| route | answer | cases |", "| --- | --- | --- |"]
    lines += [f"| `{method} {group}` | {status} | {n} |" for (method, group, status), n in sorted(summary.items())]
    lines += ["", f"All {len(CASES)} cases (id, request, answer, what the error must say):", "",
              "| case | request | answer | error names |", "| --- | --- | --- | --- |"]
    for case in CASES:
        lines.append(f"| `{case.id}` | `{case.method} {_route_group(route(case))}` | {case.status} | "
                     f"{(case.fragment or '').replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _route_group(path: str) -> str:
    parts = path.split("/")
    if len(parts) > 3 and parts[2] == "models" and parts[3] != "{model}":  # /v1|admin/models/<unknown>/...
        parts[3] = "{unknown model}"
    if len(parts) > 5 and parts[4] == "versions":  # /admin/models/{model}/versions/<id>[/load]
        parts[5] = "{version}"
    return "/".join(parts)


if __name__ == "__main__":  # python -m tests.hostile_corpus > docs/hostile-input.md
    print("# Hostile input to the gateway, and the answer each gets\n\nGenerated from `tests/hostile_corpus.py` "
          "(`python -m tests.hostile_corpus`), the corpus both hostile-input tests run: in process and over real "
          "HTTP. Every answer is a JSON `{\"error\": ...}` under 1 KB; no admin case changes the weights or sets a "
          "shadow pair.\n")
    print(markdown())
