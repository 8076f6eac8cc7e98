"""Load and fault test of the recommender app over HTTP on 127.0.0.1, measured like a load tester.

    python benchmarks/serve_load.py --mma-dir runs/demo/mma --out benchmarks/results/serve_load_cpu.json \
        [--clients 1,5,20,50] [--seconds 5] [--rounds 3] [--fault-seconds 20]

1. Ceiling: no-op Serve apps of the same topology (``metamodal.serving.ceiling``): the ingress
   alone, and the ingress with one handle hop — measured in this run, on these cores.
2. Load, with ``wrk`` (a C client: the load generator costs little of the 2 cores) for
   ``--seconds`` per level at each client count, in ``--rounds`` interleaved rounds (each round
   measures the ceilings and the app's modes back to back; medians reported): retrieval alone;
   retrieve + rerank with MMA and with RuleRouter-Fuse; cold-start text and image queries
   (+ MMA). p50 / p90 / p99, req/s, non-2xx; the ratios to the ceilings measured in the same
   round (retrieval against the bare ingress, rerank and content queries against the one-hop
   ceiling); the guide's 1-client p99 budgets.
3. First request after start-up (every replica warms in its constructor).
4. Fault: two replicas of each deployment under 5 clients; one Reranker replica is killed, then
   one Ingress replica: failed requests and the time until Serve reports two running again.
Writes FILE.json, FILE.md and FILE.png.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

BUDGET_P99_MS = {"retrieve": 50.0, "retrieve+rerank": 150.0}
LUA = """
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "%s", {["Content-Type"] = "application/json"}, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%d %%d %%d\\n", latency:percentile(50),
    latency:percentile(90), latency:percentile(99), summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.timeout))
end
"""

QUIET = {"enable_access_log": False, "log_level": "WARNING"}  # no per-request log lines


def wrk(url: str, path: str, bodies: list[str], clients: int, seconds: float) -> dict:
    """One load level: ``clients`` connections on one wrk thread, bodies in rotation."""
    lua = LUA % (",".join(f"[==[{b}]==]" for b in bodies), path)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{seconds:.0f}s", "--timeout", "30s", "-s", f.name, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    Path(f.name).unlink()
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    p50, p90, p99, n, dur, status, conn, read, tout = (int(x) for x in m.groups())
    ok = n - status - conn - read - tout
    return {"clients": clients, "requests": n, "non_2xx": status, "socket_errors": conn + read + tout,
            "p50_ms": p50 / 1e3, "p90_ms": p90 / 1e3, "p99_ms": p99 / 1e3,
            "throughput_rps": ok / (dur / 1e6)}  # answered 200: shed (503) requests do not count


def bodies_for(cfg, n: int = 2000, seed: int = 0) -> dict[str, list[str]]:
    """Request bodies per query kind: every test user (up to ``n``) once per cycle, item texts,
    item images (when extracted). MMA's router remembers each prompt it has read, so a body
    seen again costs less: levels cycle through as many distinct users as the data has."""
    from metamodal.train.artifacts import load_run

    run = load_run(cfg.retriever_run)
    ds, rng = run.ds, np.random.default_rng(seed)
    users = ds.user_ids[rng.permutation(np.unique(ds.interactions.user[run.split.test]))[:n]]
    out = {"user": [json.dumps({"user_id": str(u), "k": 10}) for u in users]}
    texts = [m for m in ds.modalities.values() if getattr(m, "texts", None) is not None and m.kind == "text"]
    if texts:
        t = texts[0]
        rows = rng.choice(np.flatnonzero(t.present), min(n, int(t.present.sum())), replace=False)
        out["text"] = [json.dumps({"text": str(t.texts[i])[:500], "k": 10}) for i in rows]
    images = image_files(run)
    if images:
        out["image"] = [json.dumps({"image_b64": base64.b64encode(p.read_bytes()).decode(), "k": 10})
                        for p in images[:20]]  # fmt: skip
    return out


def image_files(run) -> list[Path]:
    feats = run.config["data"].get("features")
    if not feats:
        return []
    from metamodal.rundir import ExtractRun

    root = Path(ExtractRun(feats).manifest().catalog)
    return sorted(p for ext in ("*.jpg", "*.png") for p in (root / "images").rglob(ext))[:20]


def with_rerank(bodies: list[str], rerank: bool) -> list[str]:
    return [json.dumps({**json.loads(b), "rerank": rerank}) for b in bodies]


def modes(b: dict[str, list[str]]) -> list[tuple[str, str, list[str], str]]:
    """(mode, app, bodies, ceiling) per measured mode."""
    out = [("retrieve", "mma", with_rerank(b["user"], False), "ingress"),
           ("retrieve+rerank mma", "mma", with_rerank(b["user"], True), "one_hop"),
           ("retrieve+rerank rulerouter", "rulerouter", with_rerank(b["user"], True), "one_hop")]  # fmt: skip
    for kind in ("text", "image"):
        if kind in b:
            out.append((f"cold {kind} + mma", "mma", with_rerank(b[kind], True), "one_hop"))
    return out


def first_request_ms(url: str, body: str) -> float:
    t = time.perf_counter()
    requests.post(url, data=body, headers={"content-type": "application/json"}, timeout=60)
    return 1e3 * (time.perf_counter() - t)


def median_level(rounds: list[dict]) -> dict:
    """One level's rounds as one row: the median of each figure, counts summed."""
    row = {k: float(np.median([r[k] for r in rounds])) for k in ("throughput_rps", "p50_ms", "p90_ms", "p99_ms")}
    row.update({k: sum(r[k] for r in rounds) for k in ("requests", "non_2xx", "socket_errors")})
    return {"clients": rounds[0]["clients"], **row}


def measure(base: str, cfg, b: dict, clients: list[int], seconds: float, rounds: int) -> dict:
    """The ceilings stay deployed beside each app in turn, and every round measures each ceiling
    and each of the app's modes back to back at each client count: a mode's ratio is the median
    over rounds of its throughput over its ceiling's *in the same round*, so a slow minute of
    this noisy machine moves both sides of a ratio, not one."""
    from ray import serve

    from metamodal.serving.ceiling import ceiling_app
    from metamodal.serving.deployments import build_app

    res: dict = {"rounds": {}, "first_request_ms": {}, "ratio_rounds": {}}
    for name, hops in (("ingress", 0), ("one_hop", 1)):
        serve.run(ceiling_app(hops), name=name, route_prefix=f"/{name}", logging_config=QUIET)
    for app in ("mma", "rulerouter"):
        t0 = time.perf_counter()
        serve.run(build_app(cfg.model_copy(update={"reranker": app})), name=app, route_prefix=f"/{app}", logging_config=QUIET)
        res.setdefault("deploy_seconds", {})[app] = time.perf_counter() - t0
        res["first_request_ms"][app] = {k: first_request_ms(f"{base}/{app}/recommend", v[0]) for k, v in b.items()}
        mine = [m for m in modes(b) if m[1] == app]
        for r in range(rounds):
            for c in clients:
                ceil = {n: wrk(base, f"/{n}/recommend", b["user"], c, seconds) for n in ("ingress", "one_hop")}
                for n, row in ceil.items():
                    res["rounds"].setdefault(f"ceiling {n}", {}).setdefault(str(c), []).append(row)
                for mode, _, bodies, ceiling in mine:
                    row = wrk(base, f"/{app}/recommend", bodies, c, seconds)
                    res["rounds"].setdefault(mode, {}).setdefault(str(c), []).append(row)
                    res["ratio_rounds"].setdefault(mode, {}).setdefault(str(c), []).append(
                        row["throughput_rps"] / max(ceil[ceiling]["throughput_rps"], 1e-9))
            print(f"[load] {app}: round {r + 1}/{rounds} done", flush=True)
        serve.delete(app)
    for name in ("ingress", "one_hop"):
        serve.delete(name)
    res["levels"] = {m: [median_level(by_c[str(c)]) for c in clients] for m, by_c in res["rounds"].items()}
    res["ratios"] = {m: {c: float(np.median(v)) for c, v in by_c.items()} for m, by_c in res["ratio_rounds"].items()}
    return res


def replica_names(app: str, deployment: str) -> list[dict]:
    import ray

    return [a for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{app}#{deployment}#")]  # fmt: skip


def fault_run(cfg, base: str, bodies: list[str], seconds: float, deployment: str) -> dict:
    """Two replicas of everything under 5 clients; one ``deployment`` replica killed."""
    import ray
    from ray import serve

    from metamodal.serving.deployments import build_app

    serve.run(build_app(cfg, replicas=2), name="fault", route_prefix="/fault", logging_config=QUIET)
    url, stop, results = f"{base}/fault/recommend", threading.Event(), []

    def client(k: int) -> None:
        s, i = requests.Session(), k
        while not stop.is_set():
            t = time.perf_counter()
            try:
                code = str(s.post(url, data=bodies[i % len(bodies)], timeout=30,
                                  headers={"content-type": "application/json"}).status_code)  # fmt: skip
            except requests.RequestException as e:
                code = type(e).__name__
            results.append((t, code))
            i += 5

    threads = [threading.Thread(target=client, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    time.sleep(seconds / 3)
    before = {a["name"] for a in replica_names("fault", deployment)}
    victim = replica_names("fault", deployment)[0]
    t_kill = time.perf_counter()
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
    healthy_at = None
    while time.perf_counter() - t_kill < max(60.0, seconds):
        time.sleep(0.1)
        st = serve.status().applications["fault"].deployments[deployment]
        names = {a["name"] for a in replica_names("fault", deployment)}
        # whole again: a replacement replica (a new name) is up and two are RUNNING
        if names - before and int(st.replica_states.get("RUNNING", 0)) >= 2:
            healthy_at = time.perf_counter()
            break
    time.sleep(max(0.0, seconds - (time.perf_counter() - t_kill)))
    stop.set()
    for t in threads:
        t.join()
    serve.delete("fault")
    causes: dict[str, int] = {}
    for _, code in results:
        causes[code] = causes.get(code, 0) + 1
    return {"killed": deployment, "requests": len(results), "failed": sum(c != "200" for _, c in results),
            "by_status": causes, "recovery_seconds": None if healthy_at is None else healthy_at - t_kill}  # fmt: skip


def markdown(res: dict) -> str:
    lines = ["| mode | clients | req/s | p50 ms | p90 ms | p99 ms | non-2xx | / ceiling |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for mode, rows in res["levels"].items():
        for r in rows:
            ratio = res["ratios"].get(mode, {}).get(str(r["clients"]))
            lines.append(f"| {mode} | {r['clients']} | {r['throughput_rps']:.0f} | {r['p50_ms']:.1f} | "
                         f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['non_2xx'] + r['socket_errors']} | "
                         + (f"{ratio:.2f} |" if ratio is not None else "- |"))  # fmt: skip
    lines += ["", f"Each row: the median of {res['rounds_run']} interleaved rounds of {res['seconds_per_level']:.0f} s "
              "(ceilings: of every round of both apps); a ratio is the median of the rounds' own ratios.",
              "First request after start-up (ms): " + "; ".join(
        f"{app}: " + ", ".join(f"{k} {v:.0f}" for k, v in d.items()) for app, d in res["first_request_ms"].items())]  # fmt: skip
    lines.append("1-client p99 budgets: " + ", ".join(f"{k} {'met' if v else 'missed'}" for k, v in res["budgets_met"].items()))
    for f in res["fault"]:
        rec = f"{f['recovery_seconds']:.1f} s" if f["recovery_seconds"] is not None else "not within the wait"
        lines.append(f"Fault: one of two {f['killed']} replicas killed under 5 clients: {f['failed']} of "
                     f"{f['requests']} requests failed ({f['by_status']}); two running again after {rec}.")  # fmt: skip
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, rows in res["levels"].items():
        c = [r["clients"] for r in rows]
        style = "--" if mode.startswith("ceiling") else "-"
        a1.plot(c, [r["throughput_rps"] for r in rows], "o" + style, label=mode)
        a2.plot(c, [r["p99_ms"] for r in rows], "o" + style, label=mode)
    a1.set(xlabel="concurrent clients", ylabel="req/s", xscale="log", title="throughput (wrk, 127.0.0.1)")
    a2.set(xlabel="concurrent clients", ylabel="p99 ms", xscale="log", yscale="log", title="p99 latency")
    a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mma-dir", required=True)
    p.add_argument("--clients", default="1,5,20,50")
    p.add_argument("--seconds", type=float, default=5.0, help="per level and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    p.add_argument("--fault-seconds", type=float, default=20.0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")

    from ray import serve

    from metamodal.raylogs import start_ray
    from metamodal.serving.config import ServeConfig
    from metamodal.workflows.serve_check import free_port

    start_ray()
    cfg = ServeConfig(mma_dir=str(a.mma_dir)).resolved()
    port, clients = free_port(), [int(x) for x in a.clients.split(",")]
    base = f"http://127.0.0.1:{port}"
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config=QUIET)
    b = bodies_for(cfg)
    res = measure(base, cfg, b, clients, a.seconds, a.rounds)
    one = {m: rows[0] for m, rows in res["levels"].items() if rows[0]["clients"] == 1}
    res["budgets_met"] = {m: one[m]["p99_ms"] <= BUDGET_P99_MS["retrieve" if m == "retrieve" else "retrieve+rerank"]
                          for m in one if not m.startswith("ceiling")}  # fmt: skip
    res["fault"] = [fault_run(cfg, base, with_rerank(b["user"], True), a.fault_seconds, d)
                    for d in ("Reranker", "Ingress")]  # fmt: skip
    serve.shutdown()
    res.update({"mma_dir": str(a.mma_dir), "clients": clients, "seconds_per_level": a.seconds, "rounds_run": a.rounds,
                "budget_p99_ms": BUDGET_P99_MS})  # fmt: skip
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    md = markdown(res)
    out.with_suffix(".md").write_text(md + "\n")
    plot(res, out.with_suffix(".png"))
    print(md)


if __name__ == "__main__":
    main()
