"""The Ray Serve application. A handle hop costs about as much as a whole retrieval, so hops are
paid only where work is heavy: the FastAPI ingress retrieves in-process (faiss, ids, history
means), the query encoders (MiniLM / image tower) are their own deployment reached only by
content queries, and an LLM reranker (MMA) is a batched (GPU-able) deployment; a light reranker
(RuleRouter-Fuse, a fusion model: about a millisecond) runs inside the ingress. Every replica
loads and warms its models in its constructor, so no request meets a cold model.

Each request has a deadline (the config's, or shorter by ``X-Timeout-Ms``); a stage that runs
out answers 504 naming it. Every deployment has a bounded queue: when it is full the request is
shed with 503 and ``Retry-After`` instead of waiting without bound. Model work runs off the event
loop, so ``/healthz`` (answered from the ingress's own state) stays quick under load.

The classes live here, in the installed package, because Serve replicas import deployments by
module path: classes defined in a script or a test module fail inside the replica. No
``from __future__ import annotations`` here: FastAPI must see the request model as a class, or
it takes the body for a query parameter.
"""

import asyncio
import time

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.config import BackpressureConfig
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from metamodal.serving.config import ServeConfig
from metamodal.serving.encoders import BadQuery
from metamodal.serving.metrics import answered, rejected
from metamodal.serving.retriever import RetrieverCore
from metamodal.serving.schemas import (
    MAX_BODY_BYTES,
    MAX_TIMEOUT_MS,
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
    rejected(422)
    return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)


@api.exception_handler(StarletteHTTPException)  # FastAPI's and the body limit's 413
async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if exc.status_code != 413 else f"request body too large: over the {MAX_BODY_BYTES}-byte limit"
    rejected(exc.status_code)
    return JSONResponse({"detail": safe_text(str(detail))}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))  # fmt: skip


def with_threads(cfg: ServeConfig) -> ServeConfig:
    """This replica's torch thread count, set before its models load."""
    import torch

    torch.set_num_threads(cfg.torch_threads)
    return cfg


SHED = BackpressureConfig(status_code=503, retry_after_s=1)


# Serve's default of 5 requests in flight per replica makes the router back off once 5 clients
# wait and caps the reranker's batches at 5.
@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=8,
                  max_queued_requests=16, backpressure_config=SHED)  # fmt: skip
class QueryEncoder:
    def __init__(self, cfg: dict) -> None:
        from metamodal.serving.encoders import QueryEncoderCore

        self.core = QueryEncoderCore(with_threads(ServeConfig(**cfg)))
        self.core.warm()

    async def encode(self, kind: str, value: str):
        try:
            return await asyncio.to_thread(self.core.encode, kind, value)
        except BadQuery as e:
            return {"status": 422, "detail": str(e)}


# A queue deeper than a few batches only turns overload into deadline misses (504s after the
# whole wait): shedding early with 503 + Retry-After lets a client back off or go elsewhere.
@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=16,
                  max_queued_requests=8, backpressure_config=SHED)  # fmt: skip
class Reranker:
    def __init__(self, cfg: dict) -> None:
        from metamodal.serving.reranker import RerankerCore

        self.core = RerankerCore(with_threads(ServeConfig(**cfg)))
        self.core.warm()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def rerank(self, items: list[tuple]) -> list:
        return await asyncio.to_thread(self.core.rerank, items)


class Deadline:
    def __init__(self, ms: float) -> None:
        self.ms, self.end = ms, time.monotonic() + ms / 1e3

    def left(self, stage: str) -> float:
        """Seconds left before ``stage`` starts; a 504 naming it when none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise HTTPException(504, f"the request's {self.ms:.0f} ms deadline ran out before stage '{stage}'")
        return left

    async def run(self, stage: str, method, *args):
        """``method.remote(*args)`` within what is left of the deadline; one retry when the
        replica serving it dies mid-request (calls are reads: safe to repeat)."""
        from ray.exceptions import RayActorError

        for attempt in (0, 1):
            left = self.left(stage)
            try:
                return await asyncio.wait_for(method.remote(*args), left)
            except TimeoutError:
                raise HTTPException(504, f"the request's {self.ms:.0f} ms deadline ran out in stage '{stage}'") from None
            except BackPressureError:
                raise HTTPException(503, f"stage '{stage}' is overloaded (its queue is full); retry later",
                                    {"Retry-After": "1"}) from None  # fmt: skip
            except RayActorError:
                if attempt:
                    raise


def request_deadline(request: Request, default_ms: float) -> Deadline:
    """The config's deadline, or a shorter one from ``X-Timeout-Ms`` (a 422 naming the header
    when it is not a number in range)."""
    raw = request.headers.get("x-timeout-ms")
    if raw is None:
        return Deadline(default_ms)
    try:
        ms = float(raw)
    except ValueError:
        ms = float("nan")
    if not 1 <= ms <= MAX_TIMEOUT_MS:  # NaN fails too
        raise HTTPException(422, f"header X-Timeout-Ms must be a number of milliseconds in [1, {MAX_TIMEOUT_MS}]")
    return Deadline(min(ms, default_ms))


def _fail(res) -> None:
    if isinstance(res, dict) and "status" in res:
        raise HTTPException(status_code=res["status"], detail=res["detail"])


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=100,
                  max_queued_requests=200, backpressure_config=SHED)  # fmt: skip
@serve.ingress(api)
class Ingress:
    def __init__(self, encoder: DeploymentHandle, reranker: DeploymentHandle | None, cfg: dict) -> None:
        """``reranker``: the LLM reranker's deployment, or None to rerank in this replica."""
        from metamodal.serving.reranker import RerankerCore, reranker_name

        c = ServeConfig(**cfg)
        self.encoder, self.reranker, self.cfg = encoder, reranker, c
        self.core = RetrieverCore(c)
        self.core.warm()
        self.local = None
        if reranker is None:
            self.local = RerankerCore(c)
            self.local.warm()
        self.name = reranker_name(c)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        """From this replica's own state: never waits on a model path."""
        return {"status": "ok", "items": int(self.core.ds.n_items), "users": int(self.core.ds.n_users),
                "index": self.core.index.spec.kind, "reranker": self.name}  # fmt: skip

    @api.get("/items/{item_id}")
    async def item(self, item_id: str) -> dict:
        try:
            return self.core.item_info(item_id)
        except LookupError as e:
            raise HTTPException(404, str(e)) from None

    def _retrieve(self, kind: str, value):
        try:
            return self.core.retrieve(kind, value, self.cfg.pool_size)
        except LookupError as e:
            raise HTTPException(404, str(e)) from None
        except BadQuery as e:
            raise HTTPException(422, str(e)) from None

    @api.post("/recommend")
    async def recommend(self, req: RecommendRequest, request: Request) -> RecommendResponse:
        deadline = request_deadline(request, 1e3 * self.cfg.request_timeout_s)
        t0 = time.perf_counter()
        kind, value = req.query_kind, getattr(req, req.query_kind)
        timings = {}
        if kind in ("text", "image_b64"):
            value = await deadline.run("encode", self.encoder.encode, kind, value)
            _fail(value)
            kind, timings["encode"] = "content", 1e3 * (time.perf_counter() - t0)
        got = self._retrieve(kind, value)
        t1 = time.perf_counter()
        timings["retrieve"] = 1e3 * (t1 - t0) - timings.get("encode", 0.0)
        fallback = None
        if req.rerank and len(got.pool):
            if self.local is not None:  # about a millisecond: cheaper inline than a thread hop
                deadline.left("rerank")
                rr = self.local.rerank([(got, req.modalities)])[0]
            else:
                rr = await deadline.run("rerank", self.reranker.rerank, (got, req.modalities))
            timings["rerank"] = 1e3 * (time.perf_counter() - t1)
            order, scores, name, used, tools = rr.order, rr.scores, self.name, rr.used, rr.tools
            fallback = rr.fallback
        else:
            order, scores, name, used, tools = range(len(got.pool)), got.scores, "none", [], []
        items = [
            Recommendation(item_id=got.pool_ids[p], score=float(scores[p]),
                           retrieval_score=float(got.scores[p]))
            for p in list(order)[: req.k]
        ]  # fmt: skip
        timings["total"] = 1e3 * (time.perf_counter() - t0)
        answered(req.query_kind, req.modalities, got.task, timings, name, fallback)
        return RecommendResponse(items=items, query=req.query_kind, reranker=name, fallback=fallback,
                                 used_modalities=used, tools=tools, timings_ms=timings)  # fmt: skip


def build_app(cfg: ServeConfig, replicas: int = 1, max_replicas_per_node: int | None = None):
    """The bound application (``serve.run(build_app(cfg))``). Every replica reaches the
    storage this process is configured with (``metamodal.storage``), wherever it starts, and
    loads its runs from there; ``max_replicas_per_node=1`` spreads replicas over the nodes."""
    from metamodal.raylogs import storage_env

    c = cfg.resolved().model_dump()
    env = storage_env()

    def opts(d):  # replica counts from code only when asked: a config file's autoscaling wins
        o = {"num_replicas": replicas} if replicas != 1 else {}
        if max_replicas_per_node:
            o["max_replicas_per_node"] = max_replicas_per_node
        if env:
            o["ray_actor_options"] = {**d.ray_actor_options, "runtime_env": {"env_vars": env}}
        return o

    from metamodal.serving.reranker import runs_apart

    encoder = QueryEncoder.options(**opts(QueryEncoder)).bind(c)
    reranker = Reranker.options(**opts(Reranker)).bind(c) if runs_apart(cfg) else None
    return Ingress.options(**opts(Ingress)).bind(encoder, reranker, c)
