"""The pipeline's last check: the Serve app (retriever + MMA reranker) deployed on 127.0.0.1,
asked for a known user, a history, a free text and an image over HTTP, and shut down."""

from __future__ import annotations

import base64
import json
import socket
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_image(ds) -> bytes | None:
    """The bytes of the catalogue's first item image that decodes (a catalogue may hold broken
    ones, which Serve would rightly answer 4xx), if it has images."""
    from metamodal.extract.decode import load_image

    for m in ds.modalities.values():
        for path in getattr(m, "paths", None) or []:
            if path and load_image(path, 32)[0] is not None:
                return Path(path).read_bytes()
    return None


def serve_and_ask(mma_dir: Path, ds) -> list[dict]:
    """Deploy, ask each kind of query, print and return the answers, shut down."""
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
    if image := first_image(ds):  # a cold image query: searched through the heads where aligned
        asks.append({"image_b64": base64.b64encode(image).decode(), "k": 5})
    answers = []
    try:
        for body in asks:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/recommend", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})  # fmt: skip
            with urllib.request.urlopen(req, timeout=120) as r:
                got = json.loads(r.read())
            answers.append(got)
            q = json.dumps({k: v if k != "image_b64" else f"<{len(v)} base64 chars>" for k, v in body.items() if k != "k"})[:70]
            print(f"  POST /recommend {q} -> {[x['item_id'] for x in got['items']]} (reranker "
                  f"{got['reranker']}, {got['timings_ms']['total']:.0f} ms)", flush=True)  # fmt: skip
    finally:
        serve.delete("pipeline")
        serve.shutdown()
    return answers
