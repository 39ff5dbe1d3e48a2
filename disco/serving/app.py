"""The HTTP service over a :class:`~disco.serving.search.Searcher` (FastAPI; run by uvicorn in ``disco serve``).

``POST /search`` ({"conversation": [...], "k": 10, "explain": false}), ``POST /search/batch``, ``GET /health``,
``GET /`` (one self-contained page to try it), ``GET /openapi.json`` and ``/docs`` (Swagger UI served from the
installed ``fastapi-offline`` package, so it works without a network). The service may answer before its model
is loaded (:class:`SearcherSlot`): ``GET /health`` is 503 ``{"status": "loading"}`` until then and 200
``{"status": "ready", ...}`` after; a search meanwhile is 503 with ``Retry-After``. Request limits come from :class:`Limits`
and appear in the OpenAPI schema. Every error has one shape, :class:`Problem` (``{"detail": "..."}``, one line
naming the field), and never repeats the request: a body that is not JSON is 400, a request outside the limits
422. The search handlers are ``async``: they hand their conversations to the searcher's worker thread, which
batches the requests that arrive together (disco/serving/batching.py), and await the answers without holding a
thread. Answers are the searcher's :class:`~disco.serving.schema.Result` as JSON (the response models below only
document them).
"""

# No `from __future__ import annotations`: FastAPI must see the request models defined inside create_app.

import threading
from importlib import resources
from typing import TYPE_CHECKING, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field

from disco.serving.schema import Hit, check_conversation

if TYPE_CHECKING:  # the app itself loads no model: `disco serve` answers /health while torch loads
    from disco.serving.search import Searcher


class Limits(BaseModel):
    """What one request may ask for."""

    model_config = ConfigDict(extra="forbid")

    max_turns: int = Field(64, ge=1, description="turns in one conversation")
    max_text_chars: int = Field(4000, ge=1, description="characters in one turn")
    max_k: int = Field(100, ge=1, description="passages per conversation")
    max_batch: int = Field(32, ge=1, description="conversations in one batch request")


class Problem(BaseModel):
    """Every error's body: what is wrong, naming the field (``conversation[0].text: ...``); never the input."""

    detail: str


ERRORS = {400: {"model": Problem, "description": "the body is not JSON"},
          422: {"model": Problem, "description": "a field is missing, of the wrong type or outside the limits"},
          503: {"model": Problem, "description": "the model is still loading (see GET /health)"}}


def field(loc) -> str:
    """``("body", "conversation", 0, "text")`` -> ``conversation[0].text``."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


def problem(e: RequestValidationError) -> tuple[int, str]:
    """(status, detail) of a request FastAPI could not validate: 400 for a body that is not JSON or is missing,
    422 naming the first three problems otherwise. pydantic's own messages quote no input."""
    errors = e.errors()
    first = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
    if first["type"] == "json_invalid":
        at = f" (character {first['loc'][1]})" if len(first["loc"]) > 1 else ""
        return 400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}{at}"
    if first["type"] == "missing" and tuple(first["loc"]) == ("body",):
        return 400, "the body is empty: send a JSON object (Content-Type: application/json)"
    parts = [f"{field(err['loc']) or 'body'}: {err['msg']}" for err in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return 422, "; ".join(parts) + more


class SearcherSlot:
    """The searcher a service answers with, set once it is loaded. ``also_ready`` (e.g. every worker process of
    ``disco serve --workers N`` loaded) must hold too before ``/health`` says ready.

    :meth:`swap` replaces the searcher while the service answers (``disco serve registry:NAME@production`` when
    the alias moves): a request is queued on one searcher or the other under the slot's lock, the old searcher
    is closed only after every request queued on it was answered, so no request is dropped. ``label`` names the
    model answering (``X-Disco-Model`` header, ``/health``)."""

    def __init__(self, searcher: "Searcher | None" = None, also_ready: Callable[[], bool] | None = None,
                 label: str | None = None):
        self.searcher = searcher
        self.also_ready = also_ready
        self.label = label
        self.swaps = 0
        self.senders: Callable[[], int] | None = None  # the server's open connections (service.serve sets it)
        self._lock = threading.Lock()

    def set(self, searcher: "Searcher", label: str | None = None) -> None:
        self._tell(searcher)
        with self._lock:
            self.searcher = searcher
            if label is not None:
                self.label = label

    def swap(self, searcher: "Searcher", label: str | None = None) -> None:
        """Answer new requests with ``searcher``; the old one finishes the requests queued on it, then closes."""
        self._tell(searcher)
        with self._lock:
            old, self.searcher = self.searcher, searcher
            self.label = label
            self.swaps += 1
        if old is not None:
            old.close()  # its worker answers what was queued before the swap, then stops

    def _tell(self, searcher: "Searcher") -> None:
        """Give the searcher's batches the server's count of open connections (when there is one)."""
        batcher = getattr(searcher, "batcher", None)
        if batcher is not None and self.senders is not None:
            batcher.senders = self.senders

    async def asearch(self, conversations, k: int, explain: bool):
        """(results, label): the conversations answered by the searcher current when they were queued."""
        import asyncio

        with self._lock:
            s, label = self.get(), self.label
            texts, futures = s.submit(conversations, k)
        answers = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        return [s.answer(text, a, explain) for text, a in zip(texts, answers)], label

    @property
    def ready(self) -> bool:
        return self.searcher is not None and (self.also_ready is None or self.also_ready())

    def get(self) -> "Searcher":
        if self.searcher is None:
            raise HTTPException(503, "the model is loading: retry when GET /health says ready",
                                headers={"Retry-After": "1"})
        return self.searcher


def create_app(searcher: "Searcher | SearcherSlot", limits: Limits | None = None) -> FastAPI:
    """The FastAPI application serving ``searcher`` (loaded, or a slot filled once it is) within ``limits``."""
    lim = limits or Limits()
    slot = searcher if isinstance(searcher, SearcherSlot) else SearcherSlot(searcher)

    class Turn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        speaker: str = Field(pattern="^(user|agent)$", description="user or agent")
        text: str = Field(max_length=lim.max_text_chars)

    Conversation = list[Turn]

    class SearchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        conversation: Conversation = Field(min_length=1, max_length=lim.max_turns,
                                           description="turns oldest first; the last is the user's question")
        k: int = Field(10, ge=1, le=lim.max_k)
        explain: bool = Field(False, description="also return the query's terms (those with postings in the index) "
                                                 "and weights")

    class BatchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        conversations: list[Conversation] = Field(min_length=1, max_length=lim.max_batch)
        k: int = Field(10, ge=1, le=lim.max_k)
        explain: bool = False

    class Timing(BaseModel):
        encode: float
        search: float
        total: float

    class SearchResponse(BaseModel):
        results: list[Hit]
        timing_ms: Timing
        query: str = Field(description="the student's input: the conversation as it was formatted in training")
        terms: dict[str, float] | None = None

    class BatchResponse(BaseModel):
        responses: list[SearchResponse]

    def checked(conversation: list[Turn], where: str) -> list[Turn]:
        try:
            check_conversation([t.model_dump() for t in conversation])
        except ValueError as e:
            raise HTTPException(422, f"{where}: {e}") from None
        return conversation

    app = FastAPIOffline(title="disco search", version="1", redoc_url=None,
                         description="Conversational passage search with a trained DiSCo student (no LLM at query "
                                     "time). Every error is `{\"detail\": \"...\"}`.")

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        status, detail = problem(e)
        return JSONResponse({"detail": detail}, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("disco.serving").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/health", responses={503: {"description": "loading: the model is not loaded yet"}})
    def health():
        if not slot.ready:
            return JSONResponse({"status": "loading", "limits": lim.model_dump()}, status_code=503)
        s = slot.get()
        return {"status": "ready", "model": slot.label, "swaps": slot.swaps, "passages": len(s.passages),
                "backend": s.backend,
                "max_length": s.card.max_length, "quant_scale": s.card.quant_scale, "limits": lim.model_dump(),
                "batching": s.batching.model_dump(),
                "batch_sizes": {str(k): v for k, v in sorted(s.batcher.sizes.items())},  # this process's batches
                "connections": slot.senders() if slot.senders is not None else None}  # open, as the batches see

    async def answer(req: SearchRequest) -> tuple[bytes, dict[str, str]]:
        """The body and extra headers of ``POST /search``'s 200 answer (pydantic's own serialiser: no dict, no
        json.dumps); raises what the route would answer otherwise."""
        conv = checked(req.conversation, "conversation")
        got, label = await slot.asearch([[t.model_dump() for t in conv]], req.k, req.explain)
        return got[0].model_dump_json(exclude_none=True).encode(), _model_header(label)

    @app.post("/search", response_model=SearchResponse, response_model_exclude_none=True, responses=ERRORS)
    async def search(req: SearchRequest) -> JSONResponse:
        body, headers = await answer(req)
        return Response(body, media_type="application/json", headers=headers)

    @app.post("/search/batch", response_model=BatchResponse, response_model_exclude_none=True, responses=ERRORS)
    async def search_batch(req: BatchRequest) -> JSONResponse:
        convs = [checked(c, f"conversations[{i}]") for i, c in enumerate(req.conversations)]
        got, label = await slot.asearch([[t.model_dump() for t in c] for c in convs], req.k, req.explain)
        body = ",".join(r.model_dump_json(exclude_none=True) for r in got)
        return Response(f'{{"responses":[{body}]}}', media_type="application/json", headers=_model_header(label))

    app.add_middleware(SearchFastPath, request=SearchRequest, answer=answer)
    return app


def _is_json(scope) -> bool:
    return any(k == b"content-type" and v.split(b";")[0].strip().lower() == b"application/json"
               for k, v in scope["headers"])


class SearchFastPath:
    """ASGI middleware: a ``POST /search`` with a valid JSON body is answered here, as the route answers it, without
    FastAPI's request machinery (routing, dependency solving, ``json.loads`` then validation, the response class):
    the body is validated once by pydantic-core from the bytes (``model_validate_json``) and the route's own
    :func:`answer` runs. On the demo, 8 concurrent callers: 0.210 instead of 0.354 ms of the event loop's CPU per
    search (``benchmarks/http_path.py``, issue 28).

    Anything else goes to the FastAPI app unchanged, its body replayed: other paths and methods, a body that is
    not ``application/json``, one pydantic or the conversation check rejects, a model still loading, an error
    while searching. Every error therefore has the one shape and wording the app gives (tests/serving/test_http.py).
    """

    def __init__(self, app, request, answer):
        self.app, self.request, self.answer = app, request, answer
        self.answered = 0  # searches answered here (the rest went to the app)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/search":
            return await self.app(scope, receive, send)
        chunks, message = [], {"type": "http.request", "more_body": True}
        while message["type"] == "http.request" and message.get("more_body", False):
            message = await receive()
            chunks.append(message.get("body", b""))
        body = b"".join(chunks)
        answered = None
        if message["type"] == "http.request" and _is_json(scope):
            try:
                answered = await self.answer(self.request.model_validate_json(body))
            except Exception:  # noqa: BLE001 - the app answers it (4xx, 503, 500) as it always does
                answered = None
        if answered is None:
            return await self.app(scope, _replay(body, message, receive), send)
        content, extra = answered
        self.answered += 1
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        headers += [(b"content-length", str(len(content)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _replay(body: bytes, last: dict, receive):
    """A ``receive`` that gives the body already read (or the disconnect that ended it), then the client's own."""
    first = [{"type": "http.request", "body": body, "more_body": False} if last["type"] == "http.request" else last]

    async def replay():
        return first.pop() if first else await receive()
    return replay


def _model_header(label: str | None) -> dict[str, str]:
    """``X-Disco-Model``: the model that answered (a registry version when the service follows one)."""
    return {"X-Disco-Model": label} if label else {}
