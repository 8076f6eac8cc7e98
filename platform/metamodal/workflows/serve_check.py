"""The pipeline's last check: the Serve app (retriever + MMA reranker) deployed on 127.0.0.1,
asked for a known user, a history and a free text over HTTP, and shut down."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_ask(mma_dir: Path, ds) -> list[dict]:
    """Deploy, ask three kinds of query, print and return the answers, shut down."""
    from ray import serve

    from metamodal.serving.config import ServeConfig
    from metamodal.serving.deployments import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(ServeConfig(mma_dir=str(mma_dir))), name="pipeline", route_prefix="/")
    text = next((t for m in ds.modalities.values() for t in getattr(m, "texts", None) or [] if t), "something new")
    asks = [
        {"user_id": str(ds.user_ids[0]), "k": 5},
        {"history": [str(x) for x in ds.item_ids[:3]], "k": 5},
        {"text": text[:80], "k": 5},
    ]
    answers = []
    try:
        for body in asks:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/recommend", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})  # fmt: skip
            with urllib.request.urlopen(req, timeout=120) as r:
                got = json.loads(r.read())
            answers.append(got)
            q = json.dumps({k: v for k, v in body.items() if k != "k"})[:70]
            print(f"  POST /recommend {q} -> {[x['item_id'] for x in got['items']]} (reranker "
                  f"{got['reranker']}, {got['timings_ms']['total']:.0f} ms)", flush=True)  # fmt: skip
    finally:
        serve.delete("pipeline")
        serve.shutdown()
    return answers
