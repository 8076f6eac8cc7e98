"""The Serve app's Prometheus metrics, exported through ``ray.serve.metrics`` (Ray's metrics
agent serves them on each node's metrics export port; Ray's dashboard and Grafana read them
there, every name prefixed ``ray_``).

One set per replica process, made on first use (a metric must be created inside the replica).
Tags stay low-cardinality: the query kind, the caller's observed-modality pattern (sorted
sources, ``all`` when the caller named none), the reranker, the rejection reason."""

from __future__ import annotations

from functools import cache

LATENCY_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
REJECTED = {404: "unknown_id", 413: "body_too_large", 422: "invalid_request", 503: "overloaded",
            504: "deadline"}  # fmt: skip


class ServeMetrics:
    def __init__(self) -> None:
        from ray.serve.metrics import Counter, Histogram

        self.requests = Counter("metamodal_requests", "answered /recommend requests",
                                tag_keys=("query", "modalities"))  # fmt: skip
        self.cold_start = Counter("metamodal_cold_start_requests", "answered requests for a user with no "
                                  "training history (cold-start share = this / metamodal_requests)",
                                  tag_keys=("query",))  # fmt: skip
        self.retrieve_ms = Histogram("metamodal_retrieve_ms", "first-stage retrieval latency (ms)",
                                     LATENCY_MS, tag_keys=("query",))  # fmt: skip
        self.encode_ms = Histogram("metamodal_encode_ms", "query encoder latency (ms)", LATENCY_MS,
                                   tag_keys=("query",))  # fmt: skip
        self.rerank_ms = Histogram("metamodal_rerank_ms", "rerank latency, queue included (ms)",
                                   LATENCY_MS, tag_keys=("reranker",))  # fmt: skip
        self.fallbacks = Counter("metamodal_reranker_fallbacks", "episodes the reranker answered in the "
                                 "retriever's order", tag_keys=("reason",))  # fmt: skip
        self.rejected = Counter("metamodal_rejected_requests", "requests answered with a 4xx or 503/504",
                                tag_keys=("reason",))  # fmt: skip


@cache
def serve_metrics() -> ServeMetrics:
    return ServeMetrics()


def modality_pattern(modalities: list[str] | None) -> str:
    return "all" if modalities is None else "+".join(sorted(set(modalities))) or "none"


def rejected(status: int) -> None:
    if status in REJECTED or 400 <= status < 500:
        serve_metrics().rejected.inc(tags={"reason": REJECTED.get(status, f"http_{status}")})


def answered(query: str, modalities: list[str] | None, task: str, timings: dict[str, float],
             reranker: str, fallback: str | None) -> None:  # fmt: skip
    m = serve_metrics()
    m.requests.inc(tags={"query": query, "modalities": modality_pattern(modalities)})
    if task == "cold_user":
        m.cold_start.inc(tags={"query": query})
    m.retrieve_ms.observe(timings["retrieve"], tags={"query": query})
    if "encode" in timings:
        m.encode_ms.observe(timings["encode"], tags={"query": query})
    if "rerank" in timings:
        m.rerank_ms.observe(timings["rerank"], tags={"reranker": reranker})
    if fallback:
        m.fallbacks.inc(tags={"reason": fallback})
