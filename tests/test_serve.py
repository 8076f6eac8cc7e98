"""The Serve app over real HTTP on 127.0.0.1: a retriever trained by the zoo, a fusion-model
reranker, cold start by text (MiniLM) and image (random-init CLIP: structure, not quality), and
bad requests answered 4xx while the replicas stay up; and a trained ``mma run`` served from its
run directory, answering exactly the rankings the run measured (a random-init tiny LLM: the
machinery, not the policy's quality)."""

from __future__ import annotations

import base64
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from metamodal.extract.encoders import EncoderSpec
from metamodal.serving.encoders import tiny_png
from metamodal.serving.fuzz import image_bytes, png_header

TEXT = EncoderSpec("minilm", "text_minilm")
IMAGE = EncoderSpec(
    "open_clip_image", "image_clip", arch="ViT-S-32", random_init=True, image_size=32, seed=1
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(small_shop: Path, ray_session, tmp_path_factory) -> dict:
    from metamodal.extract.pipeline import ExtractConfig, run_extraction
    from metamodal.train.runner import run_side_by_side

    d = tmp_path_factory.mktemp("serve")
    run_extraction(small_shop, d / "emb", ExtractConfig(encoders=[TEXT, IMAGE], actors=1))
    # trained where `mma run` keeps its zoo, with its overrides, so the MMA run reuses them
    zoo = ["train.epochs=2", f"data.features={d / 'emb'}"]
    common = ["missing.cold_item_frac=0.1", "split.method=mmrec", *zoo]
    run_side_by_side({m: d / "mma" / "zoo" / m for m in ("lightgcn", "late_fusion")}, small_shop, common)
    zoo_dir = d / "mma" / "zoo"
    return {"retriever": zoo_dir / "lightgcn", "model": zoo_dir / "late_fusion",
            "shop": small_shop, "mma": d / "mma", "zoo_overrides": zoo}  # fmt: skip


@pytest.fixture(scope="module")
def heads(trained: dict) -> Path:
    """Projection heads over the extraction's text and image features (what the pipeline's
    align stage makes); the MMA run's ``cross_modal`` tool and its Serve app read them."""
    from metamodal.extract.align import AlignConfig
    from metamodal.extract.align_heads import run_align_heads

    out = trained["mma"].parent / "heads"
    cfg = AlignConfig(mode="heads", epochs=2, batch_size=16, dim=16, hidden=32, workers=1, test_frac=0.2)
    run_align_heads(trained["shop"], trained["mma"].parent / "emb", out, cfg)
    return out


@pytest.fixture(scope="module")
def mma_run(trained: dict, tiny_llm: Path, heads: Path) -> Path:
    """A one-seed ``mma run`` on the shop: small episode counts, the tiny LLM as router, as the
    pointwise ``llm_rank`` tool and as the keyword-RAG ``keyword_llm`` tool (added by path), the
    heads' space for ``cross_modal``."""
    from metamodal.agent.config import MMAConfig
    from metamodal.agent.menu_net import MenuPolicyConfig
    from metamodal.agent.run import run_mma

    policy = MenuPolicyConfig(model=str(tiny_llm), train_layers=1, lora_r=4, batch=8, workers=1,
                              bc_epochs=1, rl_epochs=1)  # fmt: skip
    cfg = MMAConfig(baselines=["late_fusion"], zoo_overrides=trained["zoo_overrides"],
                    fit_episodes=20, fit_fixed_users=20, select_episodes=10,
                    select_fixed_users=12, test_episodes=8, fixed_users=8, fusion_tools=1,
                    llm_rows=8, llm_rule_rows=4, llm_ablations=[], llm_rank="on", llm_rank_rows=24, seeds=1,
                    tools=["metamodal.seq.mma_tool:keyword_llm"], tool_rows=24,
                    policy=policy, heads=str(heads))  # fmt: skip
    run_mma(str(trained["shop"]), trained["mma"], cfg)
    return trained["mma"]


@pytest.fixture(scope="module")
def server(trained: dict, mma_run: Path):
    """Two apps on one HTTP proxy: a fusion-model reranker at ``/`` and the MMA run's router
    at ``/mma`` (the MMA run trains first: its Ray Train worker wants the whole cluster)."""
    from ray import serve

    from metamodal.serving.config import ServeConfig
    from metamodal.serving.deployments import build_app

    port = free_port()
    cfg = ServeConfig(retriever_run=str(trained["retriever"]), reranker="model",
                      model_run=str(trained["model"]), pool_size=30)  # fmt: skip
    mma_cfg = ServeConfig(mma_dir=str(mma_run), reranker="mma", pool_size=50)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(cfg), name="rec", route_prefix="/")
    serve.run(build_app(mma_cfg), name="mma", route_prefix="/mma")
    yield f"http://127.0.0.1:{port}"
    serve.delete("mma")
    serve.delete("rec")
    serve.shutdown()


def post(url: str, body, headers: dict | None = None) -> requests.Response:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return requests.post(url + "/recommend", data=data, timeout=60,
                         headers={"content-type": "application/json", **(headers or {})})  # fmt: skip


def test_heads_carry_image_queries_and_cross_modal_evidence_into_one_space(trained: dict, heads: Path) -> None:
    """Heads aligned over the extraction's features: an image query is encoded, projected by
    the image head and scored against every item with text or image (text-only items too);
    the agent's ``cross_modal`` tool reads the same space, masked with its sources. Run before
    the Serve fixtures start: the heads train on Ray Train and want the CPUs."""
    from metamodal.agent.episodes import Episode
    from metamodal.agent.evidence import EvidenceStore
    from metamodal.agent.tools import cross_modal_tool, tools_for
    from metamodal.data import load_dataset
    from metamodal.extract.shared_space import (
        IMAGE_SHARED,
        SHARED,
        TEXT_SHARED,
        load_heads,
        project,
    )
    from metamodal.serving.config import ServeConfig
    from metamodal.serving.encoders import QueryEncoderCore
    from metamodal.serving.retriever import RetrieverCore
    from metamodal.train.artifacts import load_run

    loaded, reads = load_heads(heads / "heads.pt")
    assert reads == {"text": "text_minilm", "image": "image_clip"}
    scfg = ServeConfig(retriever_run=str(trained["retriever"]), reranker="none", heads=str(heads))
    enc, ret = QueryEncoderCore(scfg), RetrieverCore(scfg)
    png = base64.b64encode(tiny_png()).decode()
    modality, q = enc.encode("image_b64", png)
    _, plain = QueryEncoderCore(scfg.model_copy(update={"heads": None})).encode("image_b64", png)
    assert modality == SHARED and q.shape == (1, 16)
    np.testing.assert_allclose(q, project(loaded.image, plain), atol=1e-6)
    assert enc.encode("text", "a red shoe")[0] == "text_minilm"  # text queries keep MiniLM's space

    ds = load_run(trained["retriever"]).ds
    text_only = ds.modalities["text_minilm"].present & ~ds.modalities["image_clip"].present
    scores = ret.shared.item_scores(q)
    has_any = ds.modalities["text_minilm"].present | ds.modalities["image_clip"].present
    np.testing.assert_array_equal(np.isfinite(scores), has_any)  # every item with text or image
    i = int(np.flatnonzero(text_only)[0])  # an item no image query could reach before
    got = ret.retrieve("content", (SHARED, ret.shared.rows[TEXT_SHARED][0][i]), 10)
    assert i in got.history and got.task == "cold_user"
    ret.warm()  # every content index, the shared one too

    store = EvidenceStore.build(ds, graph_items=None, heads=heads)
    assert store.aligned == (IMAGE_SHARED, TEXT_SHARED) and "cross_modal" in tools_for(store)
    assert store.group_of(IMAGE_SHARED) == "image" and store.group_of(TEXT_SHARED) == "text"
    both = np.flatnonzero(ds.modalities["text_minilm"].present & ds.modalities["image_clip"].present)
    ep = Episode(0, both[:3], both[3:13], both[3:4], np.zeros(10), np.zeros(10, bool), ("text", "image"),
                 "warm_user", "target_positive")  # fmt: skip
    seen = cross_modal_tool(store.view(ep))
    assert seen.usable and np.isfinite(seen.scores).all()
    for only in (("text",), ("image",), ("graph",)):  # one side masked: nothing to cross to
        assert cross_modal_tool(store.view(ep.with_available(only))).status == "unavailable"
    with pytest.raises(ValueError, match="does not have"):
        EvidenceStore.build(load_dataset(trained["shop"]), graph_items=None, heads=heads)


def test_recommend_by_user_history_text_and_image(server: str, trained: dict) -> None:
    from metamodal.data import load_dataset
    from metamodal.train.artifacts import load_run

    ds = load_dataset(trained["shop"])
    run = load_run(trained["retriever"])
    seen = run.model_data().train.tocsr()
    health = requests.get(server + "/healthz", timeout=30).json()
    assert health["items"] == ds.n_items
    assert health["reranker"] == "model:late_fusion"

    u = int(np.flatnonzero(np.diff(seen.indptr) > 3)[0])
    r = post(server, {"user_id": str(ds.user_ids[u]), "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [x["item_id"] for x in body["items"]]
    assert len(ids) == 7 == len(set(ids)) and body["reranker"] == "model:late_fusion"
    seen_ids = {str(ds.item_ids[i]) for i in seen[u].indices}
    assert not seen_ids & set(ids)  # a known user's training items are not recommended
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert set(body["used_modalities"]) == {"graph", "text", "image"}

    hist = [str(ds.item_ids[i]) for i in seen[u].indices[:3]]
    r = post(server, {"history": hist, "k": 5, "modalities": ["text"]})
    assert r.status_code == 200, r.text
    assert r.json()["used_modalities"] == ["text"]  # the reranker reads only what the caller has
    assert not set(hist) & {x["item_id"] for x in r.json()["items"]}

    text = ds.modalities["text"].texts[int(np.flatnonzero(ds.modalities["text"].present)[0])]
    r = post(server, {"text": text, "k": 5})
    assert r.status_code == 200 and r.json()["query"] == "text" and len(r.json()["items"]) == 5

    img = sorted((trained["shop"] / "images").rglob("*.png")) or sorted(
        (trained["shop"] / "images").rglob("*.jpg"))  # fmt: skip
    b64 = base64.b64encode(img[0].read_bytes()).decode()
    r = post(server, {"image_b64": b64, "k": 3, "rerank": False})
    assert r.status_code == 200, r.text
    assert r.json()["reranker"] == "none" and len(r.json()["items"]) == 3

    item = requests.get(f"{server}/items/{ids[0]}", timeout=30).json()
    assert item["item_id"] == ids[0] and "text" in item["modalities"]


def test_concurrent_requests_are_batched_and_all_answered(server: str, trained: dict) -> None:
    from metamodal.data import load_dataset

    ds = load_dataset(trained["shop"])
    bodies = [{"user_id": str(ds.user_ids[i]), "k": 5} for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        codes = [r.status_code for r in pool.map(lambda b: post(server, b), bodies)]
    assert codes == [200] * 24


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ("{not json", 422, "JSON"),
        ({"user_id": "no-such-user"}, 404, "no-such-user"),
        ({"history": ["no-such-item"]}, 404, "no-such-item"),
        ({"user_id": "u1", "k": 0}, 422, "k"),
        ({"user_id": "u1", "k": 10_000}, 422, "k"),
        ({"user_id": "u1", "text": "lamp"}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"user_id": "u1", "colour": "red"}, 422, "colour"),
        ({"user_id": "u1", "modalities": ["smell"]}, 422, "smell"),
        ({"user_id": "u1", "modalities": []}, 422, "modalities"),
        ({"image_b64": "!!!not-base64!!!"}, 422, "base64"),
        ({"image_b64": base64.b64encode(b"plain text").decode()}, 422, "image"),
        ({"text": "x" * 5_000}, 422, "text"),
        ("[" + "1," * 2_500_000 + "1]", 413, "too large"),
        ('{"user_id": "u1", "k": NaN}', 422, "k"),
        ('{"user_id": "u1", "k": Infinity}', 422, "k"),
        ('{"user_id": "u1", "k": 1e999}', 422, "k"),
        ('{"user_id": "\\ud800"}', 422, "user_id"),
        ('{"history": ["P1", "\\udfffx"]}', 422, "history"),
        ('{"text": "lamp \\ud83d"}', 422, "text"),
        ({"image_b64": base64.b64encode(png_header(65535, 65535)).decode()}, 422, "too_large"),
        ({"image_b64": base64.b64encode(image_bytes(3, 600)).decode()}, 422, "aspect"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_the_service_stays_up(server, body, code, says) -> None:
    r = post(server, body)
    assert r.status_code == code, r.text
    assert says.lower() in r.text.lower()
    assert requests.get(server + "/healthz", timeout=30).status_code == 200


def test_streamed_bodies_are_capped_and_odd_headers_are_no_5xx(server: str) -> None:
    """A chunked body (no Content-Length) over the limit is refused as it arrives; a header
    that is not UTF-8 is not a server error."""
    chunks = (b"[" + b"1," * 100_000 for _ in range(30))  # ~6 MB, Transfer-Encoding: chunked
    r = requests.post(server + "/recommend", data=chunks, timeout=60,
                      headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413 and "too large" in r.text, r.text
    r = requests.post(server + "/recommend", data=json.dumps({"user_id": "u1"}), timeout=60,
                      headers={"content-type": "application/json", "x-request-timeout": b"\xff\xfe"})  # fmt: skip
    assert r.status_code < 500, r.text
    assert requests.get(server + "/healthz", timeout=30).status_code == 200


def test_deadline_answers_504_naming_the_stage(server: str, trained: dict) -> None:
    """A request whose deadline runs out gets a 504 naming the stage, and a deadline header that
    is not a number in range is a 422 naming the header."""
    from metamodal.data import load_dataset

    ds = load_dataset(trained["shop"])
    body = {"user_id": str(ds.user_ids[0]), "k": 5}
    r = post(server + "/mma", body, headers={"x-timeout-ms": "1"})  # its reranker is a hop away
    assert r.status_code == 504 and "'rerank'" in r.text, r.text
    text = {"text": "a lamp", "k": 5}
    r = post(server, text, headers={"x-timeout-ms": "1"})
    assert r.status_code == 504 and "'encode'" in r.text, r.text
    for bad in ("soon", "0", "nan", "1e12"):
        r = post(server, body, headers={"x-timeout-ms": bad})
        assert r.status_code == 422 and "x-timeout-ms" in r.text.lower(), r.text
    r = post(server, body, headers={"x-timeout-ms": "30000"})
    assert r.status_code == 200, r.text


def test_a_full_queue_sheds_with_503_and_retry_after(server: str, trained: dict) -> None:
    """A reranker that holds one request and queues one more: a burst beyond that is shed with
    503 + Retry-After, everything else is answered, and nothing else is a server error."""
    from ray import serve

    from metamodal.data import load_dataset
    from metamodal.serving.config import ServeConfig
    from metamodal.serving.deployments import Ingress, QueryEncoder, Reranker

    cfg = ServeConfig(retriever_run=str(trained["retriever"]), reranker="model",
                      model_run=str(trained["model"]), pool_size=30).resolved().model_dump()  # fmt: skip
    tight = Reranker.options(max_ongoing_requests=1, max_queued_requests=1).bind(cfg)
    serve.run(Ingress.bind(QueryEncoder.bind(cfg), tight, cfg), name="tight", route_prefix="/tight")
    url = server + "/tight"
    ds = load_dataset(trained["shop"])
    bodies = [{"user_id": str(ds.user_ids[i % ds.n_users]), "k": 5} for i in range(48)]
    try:
        with ThreadPoolExecutor(24) as pool:
            res = list(pool.map(lambda b: post(url, b), bodies))
    finally:
        serve.delete("tight")
    codes = [r.status_code for r in res]
    shed = [r for r in res if r.status_code == 503]
    assert shed and all(r.headers.get("retry-after") == "1" for r in shed), codes
    assert set(codes) <= {200, 503} and 200 in codes, codes
    assert "overloaded" in shed[0].text


def test_fuzz_subset_gives_no_5xx_and_healthz_stays_up(server: str, trained: dict) -> None:
    """Every hostile kind once (``benchmarks/serve_fuzz.py`` runs 1,000+), then a burst."""
    from metamodal.data import load_dataset
    from metamodal.serving.fuzz import fuzz_cases, run_fuzz

    ds = load_dataset(trained["shop"])
    cases = fuzz_cases([str(u) for u in ds.user_ids[:20]], [str(i) for i in ds.item_ids[:5]], n=0)
    res = run_fuzz(server, cases, health_every=10)
    assert res["failures"] == [], res["failures"]
    assert res["healthz"]["ok"] == res["healthz"]["probes"] > 5
    assert {"malformed_json", "numbers", "unicode", "bodies", "images", "headers"} <= set(res["by_group"])
    assert res["by_group"]["burst"] == {"200": 50}


def test_only_an_llm_reranker_gets_its_own_deployment(server: str) -> None:
    """A fusion model reranks inside the ingress (a hop costs more than its millisecond);
    MMA's LLM router is its own batched deployment."""
    from ray import serve

    apps = serve.status().applications
    assert set(apps["rec"].deployments) == {"Ingress", "QueryEncoder"}
    assert set(apps["mma"].deployments) == {"Ingress", "QueryEncoder", "Reranker"}


def test_unknown_item_is_404(server: str) -> None:
    r = requests.get(server + "/items/no-such-item", timeout=30)
    assert r.status_code == 404 and "no-such-item" in r.text


def test_served_mma_answers_exactly_what_the_run_measured(server: str, mma_run: Path) -> None:
    """Each validation fixed pool of the run, requested over HTTP by its user: the served top 10
    and the route's tools equal what ``mma run`` ranked (``seed0/rankings.json``)."""
    measured = json.loads((mma_run / "seed0" / "rankings.json").read_text())
    router = json.loads((mma_run / "seed0" / "router.json").read_text())
    policy = router["policy"]
    assert policy["adapter_name"] in ("adapter", "adapter_bc")  # chosen on select
    assert {"llm_rank", "keyword_llm"} <= set(router["tools"])  # the served env rebuilds both
    built = router["built_tools"]["metamodal.seq.mma_tool:keyword_llm"]
    assert built["tools"] == ["keyword_llm"] and built["summary"]["rows_by_task"]["next_item"] > 0
    result = json.loads((mma_run / "seed0" / "result.json").read_text())
    assert "keyword_llm_alone" in result["per_episode"]["ooma:text"]
    assert set(policy["adapter_select"]) == {"adapter", "adapter_bc"}
    want = measured["mma"]["valid"]
    assert len(want) >= 5 and {w["route"] for w in measured["rulerouter"]["valid"]}
    health = requests.get(server + "/mma/healthz", timeout=60).json()
    assert health["reranker"] == "mma"
    for w in want:
        r = post(server + "/mma", {"user_id": w["user"], "k": 10})
        assert r.status_code == 200, r.text
        body = r.json()
        assert [x["item_id"] for x in body["items"]] == w["items"], w["user"]
        assert body["tools"] == w["tools"]
    # a caller with only text: a pattern whose fixed pools no run trains takes its menu
    r = post(server + "/mma", {"user_id": want[0]["user"], "k": 5, "modalities": ["text"]})
    assert r.status_code == 200, r.text
    assert r.json()["used_modalities"] == ["text"] and len(r.json()["items"]) == 5
    # a cold image query to the run's app: projected by the run's image head, searched in its space
    r = post(server + "/mma", {"image_b64": base64.b64encode(tiny_png()).decode(), "k": 5})
    assert r.status_code == 200, r.text
    assert r.json()["query"] == "image_b64" and len({x["item_id"] for x in r.json()["items"]}) == 5


def test_a_run_cut_off_before_its_last_seed_reports_the_seeds_it_finished(
    trained: dict, mma_run: Path
) -> None:
    """A 5-seed run stopped after seed 0, rerun with ``--seeds 1``: seed 0 is reused, not
    trained again (the seed count is not part of what a seed's result depends on)."""
    from metamodal.agent.config import MMAConfig
    from metamodal.agent.run import run_mma

    conf = mma_run / "config.json"
    cfg = MMAConfig.model_validate(json.loads(conf.read_text()))
    conf.write_text(json.dumps({**cfg.model_dump(), "seeds": 5}))
    before = (mma_run / "seed0" / "result.json").stat().st_mtime_ns
    rep = run_mma(str(trained["shop"]), mma_run, cfg)
    assert rep["timing"]["reused_seeds"] == [0]
    assert (mma_run / "seed0" / "result.json").stat().st_mtime_ns == before
    assert json.loads(conf.read_text())["seeds"] == 1
    fit = rep["router_fit"][0]  # the router's fit, read back from the reused seed
    assert fit["seed"] == 0 and fit["bc_loss_last"] > 0 and fit["bucket_floor"] >= fit["target_entropy"] - 1e-9
    assert "bucket-only floor" in (mma_run / "report.md").read_text()


def test_served_rulerouter_runs_only_its_routes_tools_and_ranks_as_measured(mma_run: Path) -> None:
    """RuleRouter-Fuse in the Reranker (in process): each validation fixed pool ranks as
    ``mma run`` measured it, while only the route's own tools are called."""
    from metamodal.serving.config import ServeConfig
    from metamodal.serving.reranker import RerankerCore
    from metamodal.serving.retriever import RetrieverCore

    cfg = ServeConfig(mma_dir=str(mma_run), reranker="rulerouter", pool_size=50)
    retriever, core = RetrieverCore(cfg), RerankerCore(cfg)
    called: list[str] = []
    for name, tool in list(core.routed.env.tools.items()):
        core.routed.env.tools[name] = lambda ev, t=tool, n=name: called.append(n) or t(ev)
    want = json.loads((mma_run / "seed0" / "rankings.json").read_text())["rulerouter"]["valid"]
    assert want
    for w in want:
        got = retriever.retrieve("user_id", w["user"])
        called.clear()
        (r,) = core.rerank([(got, None)])
        assert [got.pool_ids[i] for i in r.order[:10]] == w["items"], w["user"]
        assert r.tools == w["tools"] and sorted(called) == sorted(w["tools"])


def test_a_pattern_the_run_never_trained_keeps_the_retrievers_order_and_says_so(server: str, trained: dict) -> None:
    from metamodal.data import load_dataset

    user = str(load_dataset(trained["shop"]).user_ids[0])
    r = post(server + "/mma", {"user_id": user, "k": 5, "modalities": ["audio"]})  # no audio source here
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] == "untrained_pattern" and body["used_modalities"] == [] and body["tools"] == []
    assert [x["score"] for x in body["items"]] == [x["retrieval_score"] for x in body["items"]]


def test_serve_metrics_reach_rays_prometheus_endpoint(server: str, trained: dict) -> None:
    """A few requests of each kind, then Ray's metrics endpoint on 127.0.0.1 is scraped (as
    Prometheus would) until the replicas' last report shows them."""
    import ray

    from metamodal.data import load_dataset

    ds = load_dataset(trained["shop"])
    assert post(server, {"user_id": str(ds.user_ids[1]), "k": 5}).status_code == 200
    assert post(server, {"history": [str(ds.item_ids[0])], "k": 5, "modalities": ["text", "graph"]}).status_code == 200
    assert post(server, {"user_id": "no-such-user"}).status_code == 404
    assert post(server, {"user_id": "u1", "k": 0}).status_code == 422
    assert post(server + "/mma", {"user_id": str(ds.user_ids[0]), "modalities": ["audio"]}).status_code == 200
    port = ray._private.worker.global_worker.node.metrics_export_port
    wanted = ['ray_metamodal_requests_total{', 'query="user_id"', 'modalities="graph+text"',
              'ray_metamodal_retrieve_ms_bucket{', 'ray_metamodal_rerank_ms_bucket{', 'reranker="model:late_fusion"',
              'ray_metamodal_rejected_requests_total{', 'reason="unknown_id"', 'reason="invalid_request"',
              'ray_metamodal_cold_start_requests_total{', 'ray_metamodal_reranker_fallbacks_total{',
              'reason="untrained_pattern"']  # fmt: skip
    missing, end = wanted, time.monotonic() + 90
    while missing and time.monotonic() < end:
        body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        missing = [w for w in wanted if w not in body]
        time.sleep(2)
    assert not missing, missing


def test_monitor_reads_a_real_extraction_and_a_zoo_runs_calibration(trained: dict, tmp_path: Path) -> None:
    """The served shop's own extraction against itself (nothing may be flagged as drift), with
    the late-fusion run's score calibration per modality pattern."""
    from metamodal.monitor import DriftConfig, run_monitor

    emb = trained["retriever"].parent.parent.parent / "emb"
    res = run_monitor(emb, emb, tmp_path / "mon", zoo=trained["model"], drift_cfg=DriftConfig(permutations=50))
    assert set(res["modalities"]) == {"text_minilm", "image_clip"}
    assert not [f for f in res["flags"] if not f.startswith("calibration")]
    cal = res["calibration"]
    assert cal["model"] == "late_fusion" and 0 <= cal["overall"]["ece"] <= 1
    assert {"cold", "text+image"} <= set(cal["patterns"])  # the run's cold items and full items
    assert sum(p["pairs"] for p in cal["patterns"].values()) == cal["overall"]["pairs"]
    assert (tmp_path / "mon" / "reliability.png").is_file()
