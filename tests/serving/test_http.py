"""`disco serve` as a real uvicorn process: the endpoints, the limits and their 4xx errors, the page, the
OpenAPI schema, concurrent clients, and a bounded Schemathesis fuzz that must find no 5xx."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from disco.serving.terminal import _loopback

pytestmark = pytest.mark.slow


def _conv(*texts: str) -> list[dict]:
    return [{"speaker": "user" if i % 2 == 0 else "agent", "text": t} for i, t in enumerate(texts)]


def test_health_page_and_schema(server):
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ready" and health["passages"] > 0 and health["batching"]["max_batch"] >= 1
    page = httpx.get(server + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="question"' in page.text
    assert not any(x in page.text for x in ('src="http', "href=\"http", "@import", "<link")), "external assets"
    schema = httpx.get(server + "/openapi.json").json()
    assert {"/search", "/search/batch", "/health"} <= set(schema["paths"])


def test_search_matches_the_python_api(server, searcher, test_turns):
    conv = test_turns[0]["conversation"]
    resp = httpx.post(server + "/search", json={"conversation": conv, "k": 5, "explain": True}, timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body["timing_ms"]) == {"encode", "search", "total"}
    assert 0 < len(body["results"]) <= 5 and set(body["results"][0]) >= {"id", "score", "text"}
    assert body["terms"] and all(w > 0 for w in body["terms"].values())
    local = searcher.search(conv, k=5)
    assert [r["id"] for r in body["results"]] == [h.id for h in local.results]
    plain = httpx.post(server + "/search", json={"conversation": conv}, timeout=60).json()
    assert "terms" not in plain and len(plain["results"]) == min(10, len(plain["results"]))


def test_batch(server, test_turns):
    convs = [t["conversation"] for t in test_turns[:3]]
    resp = httpx.post(server + "/search/batch", json={"conversations": convs, "k": 3}, timeout=60)
    assert resp.status_code == 200, resp.text
    singles = [httpx.post(server + "/search", json={"conversation": c, "k": 3}, timeout=60).json() for c in convs]
    assert [[r["id"] for r in b["results"]] for b in resp.json()["responses"]] == \
        [[r["id"] for r in s["results"]] for s in singles]


@pytest.mark.parametrize("body, status, fragment", [
    ({"conversation": _conv("hi"), "k": 101}, 422, "less than or equal to 100"),
    ({"conversation": _conv("hi"), "k": 0}, 422, "greater than or equal to 1"),
    ({"conversation": []}, 422, "at least 1"),
    ({"conversation": _conv(*["q"] * 65)}, 422, "at most 64"),
    ({"conversation": _conv("x" * 4001)}, 422, "at most 4000 characters"),
    ({"conversation": _conv("hi", "hello")}, 422, "must be the user's current question"),
    ({"conversation": [{"speaker": "bot", "text": "hi"}]}, 422, "speaker"),
    ({"conversation": _conv("hi"), "extra": 1}, 422, "extra"),
    ({"conversations": [_conv("hi")] * 33}, 422, "at most 32"),
])
def test_limits_give_4xx_naming_the_problem(server, body, status, fragment):
    path = "/search/batch" if "conversations" in body else "/search"
    resp = httpx.post(server + path, json=body, timeout=30)
    assert resp.status_code == status
    assert fragment in resp.text


def test_malformed_json_is_400(server):
    resp = httpx.post(server + "/search", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json() == {"detail": "the body is not valid JSON: Expecting property name enclosed in double quotes "
                                     "(character 1)"}


@pytest.mark.parametrize("method, path, body, status, detail", [
    ("post", "/search", {"conversation": _conv("x" * 100_000)}, 422,
     "conversation[0].text: String should have at most 4000 characters"),
    ("post", "/search", {"conversation": _conv("hi"), "k": 101}, 422, "k: Input should be less than or equal to 100"),
    ("post", "/search", {"conversation": _conv("hi", "hello")}, 422,
     "conversation: the last turn (turn 2) must be the user's current question, not 'agent'"),
    ("post", "/search/batch", {"conversations": [[{"speaker": "bot", "text": "y" * 5000}]]}, 422,
     "conversations[0][0].speaker: String should match pattern '^(user|agent)$'; conversations[0][0].text: String "
     "should have at most 4000 characters"),
    ("post", "/search", None, 400, "the body is empty: send a JSON object (Content-Type: application/json)"),
    ("post", "/search", [1, 2], 422, "body: Input should be a valid dictionary or object to extract fields from"),
    ("get", "/search", None, 405, "Method Not Allowed"),
    ("get", "/nothing-here", None, 404, "Not Found"),
])
def test_every_error_is_one_shape_without_the_input(server, method, path, body, status, detail):
    """{"detail": one line naming the field} for every error: no pydantic list, no echo of a 100 kB turn."""
    resp = httpx.request(method, server + path, json=body, timeout=60)
    assert resp.status_code == status
    assert resp.json() == {"detail": detail}
    assert len(resp.content) < 500 and "xxxxxxxxxx" not in resp.text and "yyyyyyyyyy" not in resp.text


def test_the_schema_documents_the_error_shape(server):
    schema = httpx.get(server + "/openapi.json").json()
    for path in ("/search", "/search/batch"):
        responses = schema["paths"][path]["post"]["responses"]
        assert {r["content"]["application/json"]["schema"]["$ref"] for code, r in responses.items()
                if code in ("400", "422")} == {"#/components/schemas/Problem"}, responses


def test_docs_are_served_without_a_network(server):
    """/docs names no other host: Swagger UI's script and style come from the service itself."""
    html = httpx.get(server + "/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    for asset in (a for a in assets if a.endswith((".js", ".css"))):
        got = httpx.get(server + asset)
        assert got.status_code == 200 and len(got.content) > 10_000, asset


def test_sixteen_concurrent_clients(server, test_turns):
    convs = [t["conversation"] for t in test_turns[:8]]
    with httpx.Client(timeout=120) as c:
        expected = [[r["id"] for r in c.post(server + "/search", json={"conversation": x}).json()["results"]]
                    for x in convs]

    def one(i: int) -> tuple[int, list[str]]:
        with httpx.Client(timeout=120) as c:
            r = c.post(server + "/search", json={"conversation": convs[i % len(convs)]})
            return r.status_code, [h["id"] for h in r.json()["results"]]

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(one, range(64)))
    assert all(status == 200 for status, _ in got)
    assert all(ids == expected[i % len(convs)] for i, (_, ids) in enumerate(got))
    sizes = {int(n): count for n, count in httpx.get(server + "/health").json()["batch_sizes"].items()}
    assert sum(n * count for n, count in sizes.items()) >= 64 + len(convs)  # every search so far, in batches
    assert max(sizes) > 1, sizes  # concurrent requests were encoded together


def test_batches_know_the_open_connections(server):
    """Each keep-alive connection can have one request in flight, so a batch with a request from every open
    connection starts without waiting for more (disco/serving/batching.py); /health reports the count they see."""
    clients = [httpx.Client(timeout=60) for _ in range(3)]
    try:
        counts = [c.get(server + "/health").json()["connections"] for c in clients]
        assert counts[-1] >= 3 and counts == sorted(counts)  # each client's connection stays open
        clients.pop().close()
        assert clients[0].get(server + "/health").json()["connections"] == counts[-1] - 1
    finally:
        for c in clients:
            c.close()


def test_loopback_detection():
    assert _loopback("127.0.0.1") and _loopback("localhost") and _loopback("::1")
    assert not _loopback("0.0.0.0") and not _loopback("192.168.1.4")


def test_schemathesis_fuzz_finds_no_5xx(server):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(server + "/openapi.json")
    failures = []
    operations = [(op.ok(), mode) for op in schema.get_all_operations() for mode in schemathesis.GenerationMode]
    for operation, mode in operations:

        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode))
        def check(case):
            resp = case.call(timeout=60)
            if resp.status_code >= 500:
                failures.append((operation.label, resp.status_code, resp.text[:200]))

        try:
            check()
        except Unsatisfiable:  # nothing invalid to send, e.g. GET /health in negative mode
            assert mode == schemathesis.GenerationMode.NEGATIVE
    assert not failures
