"""The HTTP contract of the recommender app. Everything a request carries is checked here, before
any model sees it: unknown fields, k out of range, oversized histories, texts and images are
4xx answers that name the field, never a replica crash."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_K = 100
MAX_HISTORY = 500
MAX_TEXT_CHARS = 2_000
MAX_IMAGE_B64 = 2_000_000  # ~1.5 MB of image bytes
MAX_BODY_BYTES = 4_000_000  # whole request; larger bodies are refused before parsing (413)
MAX_TIMEOUT_MS = 300_000  # the most an X-Timeout-Ms header may ask for
SOURCES = ("graph", "text", "image", "audio", "video")


class RecommendRequest(BaseModel):
    """Exactly one query: a known user, a list of history items, a free text or an image.

    ``modalities`` are the evidence sources the caller really has for this request (``graph`` is
    the interaction history); the reranker routes with those and nothing else. Omitted: all."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, max_length=200)
    history: list[str] | None = Field(None, min_length=1, max_length=MAX_HISTORY)
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS)
    image_b64: str | None = Field(None, min_length=1, max_length=MAX_IMAGE_B64)
    k: int = Field(10, ge=1, le=MAX_K)
    modalities: list[str] | None = Field(None, min_length=1, max_length=len(SOURCES))
    rerank: bool = True

    @field_validator("history", "modalities")
    @classmethod
    def valid_unicode(cls, v: list[str] | None) -> list[str] | None:
        """JSON's ``\\ud800`` escapes decode to lone surrogates, which no response, log or
        tokenizer can encode. Pydantic refuses them in a plain string field; in a list its
        items pass, so they are refused here, where the error names the field."""
        if any(not is_valid_unicode(s) for s in v or []):
            raise ValueError("contains a lone UTF-16 surrogate (not valid Unicode)")
        return v

    @model_validator(mode="after")
    def one_query(self) -> RecommendRequest:
        given = [f for f in ("user_id", "history", "text", "image_b64") if getattr(self, f)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of user_id, history, text, image_b64"
                + (f" (got {', '.join(given)})" if given else "")
            )
        bad = sorted(set(self.modalities or []) - set(SOURCES))
        if bad:
            raise ValueError(f"unknown modalities {bad}; known: {list(SOURCES)}")
        return self

    @property
    def query_kind(self) -> str:
        for f in ("user_id", "history", "text", "image_b64"):
            if getattr(self, f):
                return f
        raise AssertionError("validated: one query")


def is_valid_unicode(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_text(s: str) -> str:
    """``s`` with anything UTF-8 cannot carry escaped, for error messages that quote input."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def validation_detail(errors: list[dict]) -> list[dict]:
    """Pydantic's errors without the offending input (it may be NaN, ∞ or a lone surrogate,
    none of which a JSON response can carry): where, what, and the message."""
    return [{"loc": [safe_text(str(x)) for x in e.get("loc", ())], "type": str(e.get("type", "")),
             "msg": safe_text(str(e.get("msg", "")))} for e in errors]  # fmt: skip


class Recommendation(BaseModel):
    item_id: str
    score: float
    retrieval_score: float


class RecommendResponse(BaseModel):
    items: list[Recommendation]
    query: str  # user_id | history | text | image_b64
    reranker: str  # what ordered the list ("none" when rerank was off or impossible)
    fallback: str | None = None  # why the reranker kept the retriever's order, when it did
    used_modalities: list[str]  # the evidence sources the reranker was allowed to read
    tools: list[str] = []  # tools the reranker called (MMA / RuleRouter-Fuse)
    timings_ms: dict[str, float] = {}
