"""Load and fault test of the recommender app over HTTP on 127.0.0.1.

    python benchmarks/serve_load.py --mma-dir runs/mma/lfm2k --out benchmarks/results/serve_load_cpu.json \
        [--reranker mma] [--clients 1,5,20] [--requests 200] [--fault-seconds 20]

1. Load: for retrieval alone (``rerank: false``) and retrieve + rerank, at each client count,
   ``--requests`` POST /recommend calls from that many concurrent clients (bounded also by
   ``--max-seconds`` per level): p50 / p95 / p99 latency, throughput, errors — against the guide's
   budgets (retrieval 10-50 ms, rerank 50-150 ms) and against the same cores called in-process
   without Serve (the overhead ratio of medians).
2. Fault: the app with two replicas of the retriever and of the reranker under load; one reranker
   replica is killed; the failed requests are counted and the time until Serve reports the
   deployment whole again (two running replicas) is measured.
Writes FILE.json, FILE.md and FILE.png. Warm-up requests run first (MMA decodes each new
evidence profile once, then answers from its cache).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

BUDGET_MS = {"retrieve": (10, 50), "retrieve+rerank": (50, 150)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def queries(cfg, n: int, seed: int = 0) -> list[dict]:
    from metamodal.train.artifacts import load_run

    run = load_run(cfg.retriever_run)
    users = run.ds.user_ids[np.unique(run.ds.interactions.user[run.split.test])]
    rng = np.random.default_rng(seed)
    return [{"user_id": str(u), "k": 10} for u in rng.choice(users, n)]


def fire(url: str, body: dict) -> tuple[bool, float, str]:
    """(ok, ms, what went wrong: an HTTP status or an exception's name)."""
    t = time.perf_counter()
    try:
        code = requests.post(url, json=body, timeout=30).status_code
        ok, why = code == 200, str(code)
    except requests.RequestException as e:
        ok, why = False, type(e).__name__
    return ok, 1e3 * (time.perf_counter() - t), why


def load_level(url: str, bodies: list[dict], clients: int, max_s: float) -> dict:
    lat, errors, done = [], 0, 0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for ok, ms, _ in pool.map(lambda b: fire(url, b) if time.perf_counter() - t0 < max_s
                                  else (None, 0.0, ""), bodies):  # fmt: skip
            if ok is None:
                continue
            done += 1
            if ok:
                lat.append(ms)
            else:
                errors += 1
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": done, "errors": errors, "p50_ms": pct(lat, 50),
            "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "throughput_rps": done / wall}  # fmt: skip


def in_process(cfg, bodies: list[dict]) -> dict:
    """The same cores without Serve: median ms per request."""
    from metamodal.serving.reranker import RerankerCore
    from metamodal.serving.retriever import RetrieverCore

    ret, rr = RetrieverCore(cfg), RerankerCore(cfg)
    for b in bodies[:50]:  # warm the same caches the served app warmed
        rr.rerank([(ret.retrieve("user_id", b["user_id"]), None)])
    t_ret, t_all = [], []
    for b in bodies:
        t = time.perf_counter()
        got = ret.retrieve("user_id", b["user_id"])
        t_ret.append(1e3 * (time.perf_counter() - t))
        rr.rerank([(got, None)])
        t_all.append(1e3 * (time.perf_counter() - t))
    return {"retrieve": statistics.median(t_ret), "retrieve+rerank": statistics.median(t_all)}


def replica_actors(app: str, deployment: str) -> list:
    import ray

    return [a for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{app}#{deployment}#")]  # fmt: skip


def running_replicas(app: str, deployment: str) -> int:
    from ray import serve

    st = serve.status().applications[app].deployments[deployment]
    return int(st.replica_states.get("RUNNING", 0))


def fault_run(cfg, url: str, bodies: list[dict], seconds: float, app: str) -> dict:
    import ray
    from ray import serve

    from metamodal.serving.deployments import build_app

    serve.run(build_app(cfg, replicas=2), name=app, route_prefix="/")
    for b in bodies[:40]:
        fire(url, {**b})
    stop, results = threading.Event(), []

    def client() -> None:
        i = 0
        while not stop.is_set():
            results.append((time.perf_counter(), *fire(url, bodies[i % len(bodies)])))
            i += 1

    threads = [threading.Thread(target=client) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(seconds / 3)
    victim = replica_actors(app, "Reranker")[0]
    t_kill = time.perf_counter()
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
    healthy_at = None
    while time.perf_counter() - t_kill < max(60.0, seconds):  # whole: two running, new one in
        time.sleep(0.1)
        names = {a["name"] for a in replica_actors(app, "Reranker")}
        if (
            victim["name"] not in names
            and len(names) >= 2
            and running_replicas(app, "Reranker") >= 2
        ):
            healthy_at = time.perf_counter()
            break
    time.sleep(max(0.0, seconds - (time.perf_counter() - t_kill)))
    stop.set()
    for t in threads:
        t.join()
    why: dict[str, int] = {}
    for r in results:
        if not r[1]:
            why[r[3]] = why.get(r[3], 0) + 1
    return {"killed": victim["name"], "requests": len(results), "failed": sum(not r[1] for r in results),
            "failures_by_cause": why,
            "recovery_seconds": None if healthy_at is None else healthy_at - t_kill,
            "clients": 5}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mma-dir", required=True)
    p.add_argument("--reranker", default="mma")
    p.add_argument("--clients", default="1,5,20")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--fault-seconds", type=float, default=20.0)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    import ray
    from ray import serve

    from metamodal.serving.config import ServeConfig
    from metamodal.serving.deployments import build_app

    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    cfg = ServeConfig.from_mma_dir(a.mma_dir, reranker=a.reranker).resolved()
    bodies = queries(cfg, a.requests)
    port = free_port()
    url = f"http://127.0.0.1:{port}/recommend"
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    t0 = time.perf_counter()
    serve.run(build_app(cfg), name="load", route_prefix="/")
    deploy_s = time.perf_counter() - t0
    for b in bodies[:50]:  # warm-up: policy decodes, encoders, caches
        fire(url, b)
    levels = {}
    for mode, rerank in (("retrieve", False), ("retrieve+rerank", True)):
        levels[mode] = []
        for c in (int(x) for x in a.clients.split(",")):
            r = load_level(url, [{**b, "rerank": rerank} for b in bodies], c, a.max_seconds)
            levels[mode].append(r)
            print(f"[load] {mode:16s} clients {c:3d}: p50 {r['p50_ms']:.1f} ms, p95 "
                  f"{r['p95_ms']:.1f}, p99 {r['p99_ms']:.1f}, {r['throughput_rps']:.1f} req/s, "
                  f"{r['errors']} errors", flush=True)  # fmt: skip
    serve.delete("load")
    local = in_process(cfg, bodies)
    fault = fault_run(cfg, url, bodies, a.fault_seconds, "fault")
    print(f"[fault] {fault}", flush=True)
    serve.shutdown()
    single = {m: next(r for r in levels[m] if r["clients"] == min(x["clients"] for x in levels[m]))
              for m in levels}  # fmt: skip
    res = {
        "mma_dir": str(a.mma_dir), "reranker": a.reranker, "deploy_seconds": deploy_s,
        "levels": levels, "in_process_p50_ms": local,
        "overhead_ratio_p50": {m: single[m]["p50_ms"] / local[m] for m in levels},
        "budget_ms": BUDGET_MS, "fault": fault,
        "within_budget_1_client_p95": {m: single[m]["p95_ms"] <= BUDGET_MS[m][1] for m in levels},
    }  # fmt: skip
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    md = markdown(res)
    out.with_suffix(".md").write_text(md + "\n")
    plot(res, out.with_suffix(".png"))
    print(md)


def markdown(res: dict) -> str:
    lines = ["| mode | clients | requests | errors | p50 ms | p95 ms | p99 ms | req/s | budget ms |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for m, rows in res["levels"].items():
        lo, hi = res["budget_ms"][m]
        for r in rows:
            lines.append(f"| {m} | {r['clients']} | {r['requests']} | {r['errors']} | "
                         f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                         f"{r['throughput_rps']:.1f} | {lo}-{hi} |")  # fmt: skip
    lp, ov, f = res["in_process_p50_ms"], res["overhead_ratio_p50"], res["fault"]
    lines += ["", "In-process (no Serve) p50: " + ", ".join(
        f"{m} {lp[m]:.1f} ms (Serve/in-process {ov[m]:.1f}x at 1 client)" for m in lp)]  # fmt: skip
    rec = (
        f"{f['recovery_seconds']:.1f} s"
        if f["recovery_seconds"] is not None
        else "not within the wait"
    )
    lines.append(f"Fault: killed one of two Reranker replicas under 5 clients: {f['failed']} of "
                 f"{f['requests']} requests failed; whole again after {rec}.")  # fmt: skip
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for m, rows in res["levels"].items():
        c = [r["clients"] for r in rows]
        ax.plot(c, [r["p50_ms"] for r in rows], "o-", label=f"{m} p50")
        ax.plot(c, [r["p95_ms"] for r in rows], "s--", label=f"{m} p95")
        ax.axhspan(*res["budget_ms"][m], alpha=0.08)
    ax.set(xlabel="concurrent clients", ylabel="latency (ms)", xscale="log", yscale="log",
           title="POST /recommend on 127.0.0.1 (shaded: the guide's budgets)")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
