"""The HTTP service over a :class:`~disco.serving.search.Searcher` (FastAPI; run by uvicorn in ``disco serve``).

``POST /search`` ({"conversation": [...], "k": 10, "explain": false}), ``POST /search/batch``, ``GET /health``,
``GET /`` (one self-contained page to try it), ``GET /openapi.json`` and ``/docs``. Request limits come from
:class:`Limits` and appear in the OpenAPI schema; a request outside them is answered 422 with the field named.
Handlers are plain ``def``: FastAPI runs them in its thread pool and the searcher serialises the model and the
JVM searcher itself.
"""

# No `from __future__ import annotations`: FastAPI must see the request models defined inside create_app.

from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from disco.serving.search import Hit, Searcher, check_conversation


class Limits(BaseModel):
    """What one request may ask for."""

    model_config = ConfigDict(extra="forbid")

    max_turns: int = Field(64, ge=1, description="turns in one conversation")
    max_text_chars: int = Field(4000, ge=1, description="characters in one turn")
    max_k: int = Field(100, ge=1, description="passages per conversation")
    max_batch: int = Field(32, ge=1, description="conversations in one batch request")


def create_app(searcher: Searcher, limits: Limits | None = None) -> FastAPI:
    """The FastAPI application serving ``searcher`` within ``limits``."""
    lim = limits or Limits()

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
        explain: bool = Field(False, description="also return the query's terms and weights")

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

    app = FastAPI(title="disco search", version="1",
                  description="Conversational passage search with a trained DiSCo student (no LLM at query time).")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("disco.serving").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "passages": len(searcher.passages), "backend": searcher.backend,
                "max_length": searcher.card.max_length,
                "quant_scale": searcher.card.quant_scale, "limits": lim.model_dump()}

    @app.post("/search", response_model=SearchResponse, response_model_exclude_none=True)
    def search(req: SearchRequest) -> SearchResponse:
        conv = checked(req.conversation, "conversation")
        got = searcher.search([t.model_dump() for t in conv], req.k, req.explain)
        return SearchResponse.model_validate(got.model_dump())

    @app.post("/search/batch", response_model=BatchResponse, response_model_exclude_none=True)
    def search_batch(req: BatchRequest) -> BatchResponse:
        convs = [checked(c, f"conversations[{i}]") for i, c in enumerate(req.conversations)]
        got = searcher.search_batch([[t.model_dump() for t in c] for c in convs], req.k, req.explain)
        return BatchResponse(responses=[SearchResponse.model_validate(r.model_dump()) for r in got])

    return app
