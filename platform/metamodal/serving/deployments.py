"""The Ray Serve application: a retriever deployment, a batched reranker deployment and a FastAPI
ingress composing them through DeploymentHandles (awaited; nothing blocks the event loop on a
``.result()``). ``build_app`` binds them from a ``ServeConfig``; ``serve_apps/recommender.py``
is the import path Serve's CLI and config files name.

The classes live here, in the installed package, because Serve replicas import deployments by
module path: classes defined in a script or a test module fail inside the replica. No
``from __future__ import annotations`` here: FastAPI must see the request model as a class, or
it takes the body for a query parameter.
"""

import time

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from metamodal.serving.config import ServeConfig
from metamodal.serving.retriever import BadQuery, RetrieverCore
from metamodal.serving.schemas import (
    MAX_BODY_BYTES,
    Recommendation,
    RecommendRequest,
    RecommendResponse,
    safe_text,
    validation_detail,
)

# max_body_size counts the bytes as they arrive — declared, chunked or under a lying
# Content-Length — and answers 413 before the body is buffered past the limit.
api = FastAPI(title="MetaModal recommender", version="0.1", max_body_size=MAX_BODY_BYTES)


@api.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A 422 naming the field, never echoing the input (FastAPI's default handler does, and NaN,
    ∞ or a lone surrogate then made the response itself fail: a 500)."""
    return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)


@api.exception_handler(StarletteHTTPException)  # FastAPI's and the body limit's 413
async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if exc.status_code != 413 else f"request body too large: over the {MAX_BODY_BYTES}-byte limit"
    return JSONResponse({"detail": safe_text(str(detail))}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))  # fmt: skip


# Serve's default of 5 requests in flight per replica makes the router back off once 5 clients
# wait (20 clients: 942 ms p50, 20 req/s) and caps the reranker's batches at 5.
@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32)
class Retriever:
    def __init__(self, cfg: dict) -> None:
        self.core = RetrieverCore(ServeConfig(**cfg))

    def retrieve(self, kind: str, value, n: int | None = None):
        try:
            return self.core.retrieve(kind, value, n)
        except LookupError as e:
            return {"status": 404, "detail": str(e)}
        except BadQuery as e:
            return {"status": 422, "detail": str(e)}

    def item(self, item_id: str) -> dict:
        try:
            return self.core.item_info(item_id)
        except LookupError as e:
            return {"status": 404, "detail": str(e)}

    def ready(self) -> dict:
        return {"items": int(self.core.ds.n_items), "users": int(self.core.ds.n_users),
                "index": self.core.index.spec.kind}  # fmt: skip


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=32)
class Reranker:
    def __init__(self, cfg: dict) -> None:
        from metamodal.serving.reranker import RerankerCore

        self.core = RerankerCore(ServeConfig(**cfg))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def rerank(self, items: list[tuple]) -> list:
        return self.core.rerank(items)

    def ready(self) -> dict:
        return {"reranker": self.core.name, "sources": self.core.sources}


async def _call(method, *args):
    """One retry when the replica serving the call dies mid-request (a crash, a preemption, a
    scale-down): the handle routes the retry to a live replica. Calls are reads: safe to repeat."""
    from ray.exceptions import RayActorError

    try:
        return await method.remote(*args)
    except RayActorError:
        return await method.remote(*args)


def _fail(res) -> None:
    if isinstance(res, dict) and "status" in res:
        raise HTTPException(status_code=res["status"], detail=res["detail"])


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=100)
@serve.ingress(api)
class Ingress:
    def __init__(self, retriever: DeploymentHandle, reranker: DeploymentHandle, k_pool: int):
        self.retriever, self.reranker, self.k_pool = retriever, reranker, k_pool

    @api.get("/healthz")
    async def healthz(self) -> dict:
        r = await self.retriever.ready.remote()
        rr = await self.reranker.ready.remote()
        return {"status": "ok", "retriever": r, "reranker": rr}

    @api.get("/items/{item_id}")
    async def item(self, item_id: str) -> dict:
        res = await self.retriever.item.remote(item_id)
        _fail(res)
        return res

    @api.post("/recommend")
    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        t0 = time.perf_counter()
        kind = req.query_kind
        got = await _call(self.retriever.retrieve, kind, getattr(req, kind), self.k_pool)
        _fail(got)
        t1 = time.perf_counter()
        timings = {"retrieve": 1e3 * (t1 - t0)}
        if req.rerank and len(got.pool):
            rr = await _call(self.reranker.rerank, (got, req.modalities))
            timings["rerank"] = 1e3 * (time.perf_counter() - t1)
            order, scores, name = rr.order, rr.scores, (await self._name())
            used, tools = rr.used, rr.tools
        else:
            order, scores, name, used, tools = range(len(got.pool)), got.scores, "none", [], []
        items = [
            Recommendation(item_id=got.pool_ids[p], score=float(scores[p]),
                           retrieval_score=float(got.scores[p]))
            for p in list(order)[: req.k]
        ]  # fmt: skip
        timings["total"] = 1e3 * (time.perf_counter() - t0)
        return RecommendResponse(items=items, query=kind, reranker=name, used_modalities=used,
                                 tools=tools, timings_ms=timings)  # fmt: skip

    async def _name(self) -> str:
        if not hasattr(self, "_reranker_name"):
            self._reranker_name = (await self.reranker.ready.remote())["reranker"]
        return self._reranker_name


def build_app(cfg: ServeConfig, replicas: int = 1):
    """The bound application (``serve.run(build_app(cfg))``)."""
    c = cfg.resolved().model_dump()
    # replica counts from code only when asked: a Serve config file's autoscaling must win
    opts = {"num_replicas": replicas} if replicas != 1 else {}
    retriever = Retriever.options(**opts).bind(c)
    reranker = Reranker.options(**opts).bind(c)
    return Ingress.bind(retriever, reranker, cfg.pool_size)
