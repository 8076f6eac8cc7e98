"""No-op Serve apps with the recommender's topology, as the load benchmark's ceiling: an ingress
that reads the body and returns a constant, with zero or one handle hop behind it. Measured in
the same run as the real app, they say how much of its cost is Serve's own (proxy, hops) and how
much is ours. Here, not in the benchmark script, because replicas import deployments by module.
"""

from fastapi import FastAPI, Request
from ray import serve
from ray.serve.handle import DeploymentHandle

ceiling_api = FastAPI(title="no-op ceiling")


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=32)
class NoopHop:
    async def noop(self, payload: object) -> int:
        return 1


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=100)
@serve.ingress(ceiling_api)
class NoopIngress:
    def __init__(self, hop: DeploymentHandle | None = None) -> None:
        self.hop = hop

    @ceiling_api.post("/recommend")
    async def recommend(self, request: Request) -> dict:
        body = await request.body()
        if self.hop is not None:
            await self.hop.noop.remote(len(body))
        return {"items": [], "query": "noop"}


def ceiling_app(hops: int):
    """The ingress alone (``hops=0``) or with one handle hop behind it."""
    return NoopIngress.bind(NoopHop.bind() if hops else None)
