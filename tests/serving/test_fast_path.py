"""``POST /search``'s fast path (disco/serving/app.py: SearchFastPath): a valid search is answered without FastAPI's
request machinery, with the same answer as the route; everything else reaches the app, which answers as before."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from disco.serving.app import SearchFastPath, create_app

pytestmark = pytest.mark.slow


def _fast_path(app) -> SearchFastPath:
    layer = app.middleware_stack
    while not isinstance(layer, SearchFastPath):
        layer = layer.app
    return layer


def _without_timing(resp) -> dict:
    doc = resp.json()
    doc.pop("timing_ms")
    return doc


def test_a_valid_search_is_answered_by_the_fast_path_as_the_route_answers_it(searcher, test_turns):
    fast = create_app(searcher)
    route = create_app(searcher)
    route.user_middleware = [m for m in route.user_middleware if m.cls is not SearchFastPath]
    with TestClient(fast) as a, TestClient(route) as b:
        for i, turn in enumerate(test_turns[:6]):
            body = {"conversation": turn["conversation"], "k": 3 + i, "explain": i % 2 == 0}
            got, want = a.post("/search", json=body), b.post("/search", json=body)
            assert got.status_code == want.status_code == 200
            assert _without_timing(got) == _without_timing(want)
            assert got.headers["content-type"] == want.headers["content-type"] == "application/json"
            assert int(got.headers["content-length"]) == len(got.content)
        assert _fast_path(fast).answered == 6
        # a charset in the content type is still JSON; the body may come in pieces
        raw = json.dumps({"conversation": test_turns[0]["conversation"]}).encode()
        resp = a.post("/search", content=iter([raw[:7], raw[7:]]),
                      headers={"content-type": "Application/JSON; charset=utf-8"})
        assert resp.status_code == 200 and _fast_path(fast).answered == 7


@pytest.mark.parametrize("method, path, body, headers, status", [
    ("post", "/search", b'{"conversation": [{"speaker": "user", "text": "hi"}], "k": 0}', None, 422),
    ("post", "/search", b'{"conversation": [{"speaker": "agent", "text": "hi"}]}', None, 422),
    ("post", "/search", b"{not json", None, 400),
    ("post", "/search", b"", None, 400),
    ("post", "/search", b'{"conversation": [{"speaker": "user", "text": "hi"}]}', {"content-type": "text/plain"},
     422),
    ("get", "/search", None, None, 405),
    ("post", "/search/batch", b'{"conversations": [[{"speaker": "user", "text": "hi"}]]}', None, 200),
])
def test_everything_else_reaches_the_app_with_its_body(searcher, method, path, body, headers, status):
    app = create_app(searcher)
    with TestClient(app) as client:
        resp = client.request(method, path, content=body,
                              headers=headers or {"content-type": "application/json"})
        assert resp.status_code == status, resp.text
        assert set(resp.json()) == ({"responses"} if status == 200 else {"detail"})
        assert _fast_path(app).answered == 0


def test_a_search_while_loading_is_the_apps_503(trained_run):
    from disco.serving.app import SearcherSlot

    app = create_app(SearcherSlot())
    with TestClient(app) as client:
        resp = client.post("/search", json={"conversation": [{"speaker": "user", "text": "hi"}]})
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert "loading" in resp.json()["detail"]
        assert _fast_path(app).answered == 0
