"""Fuzz the recommender app over HTTP on 127.0.0.1 (bounded, loopback only).

    python benchmarks/serve_fuzz.py --mma-dir runs/demo/mma --out benchmarks/results/serve_fuzz_cpu.json \
        [--reranker mma] [--n 1000] [--seed 0]

Sends ``--n`` malformed and adversarial requests plus concurrent bursts
(``metamodal.serving.fuzz``), probes ``/healthz`` throughout, samples every replica's RSS every
10 ms and attributes its growth to the request in flight, and counts replica deaths (replica
actors that changed). Writes FILE.json and FILE.md: status counts per group, failures (any 5xx
but a shedding 503 with Retry-After), the largest per-request RSS growth per deployment.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np

QUIET = {"enable_access_log": False, "log_level": "WARNING"}  # no per-request log lines


class RssWatch:
    """Samples each Serve replica's RSS; ``growth(t0, t1)``: the largest rise over the
    replica's level at ``t0`` seen before ``t1``, per deployment."""

    def __init__(self, pids: dict[int, str], every_s: float = 0.01) -> None:
        import psutil

        self.procs = {pid: (psutil.Process(pid), name) for pid, name in pids.items()}
        self.samples: list[tuple[float, dict[int, int]]] = []
        self.stop, self.every = threading.Event(), every_s
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            now = {}
            for pid, (p, _) in self.procs.items():
                try:
                    now[pid] = p.memory_info().rss
                except Exception:  # a replica that died: counted by the caller
                    now[pid] = 0
            self.samples.append((time.monotonic(), now))
            time.sleep(self.every)

    def growth(self, t0: float, t1: float) -> dict[str, float]:
        before = [s for t, s in self.samples if t <= t0][-1:] or self.samples[:1]
        during = [s for t, s in self.samples if t0 <= t <= t1 + 0.05]
        out: dict[str, float] = {}
        for pid, (_, name) in self.procs.items():
            base = before[0].get(pid, 0) if before else 0
            peak = max((s.get(pid, 0) for s in during), default=base)
            out[name] = max(out.get(name, 0.0), (peak - base) / 2**20)
        return out


def replicas(app: str) -> dict[int, str]:
    """pid -> deployment name of the app's live replicas (Ray titles their processes
    ``ray::ServeReplica:<app>:<deployment>``; the state API would need the dashboard)."""
    import psutil

    out = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        if title.startswith(f"ray::ServeReplica:{app}:"):
            out[p.info["pid"]] = title.split(":")[-1].split()[0].split(".")[0]
    return out


def catalogue_ids(cfg) -> tuple[list[str], list[str]]:
    from metamodal.train.artifacts import load_run

    ds = load_run(cfg.retriever_run).ds
    rng = np.random.default_rng(0)
    users = [str(ds.user_ids[i]) for i in rng.choice(ds.n_users, min(200, ds.n_users), replace=False)]
    return users, [str(x) for x in ds.item_ids[:50]]


def write_md(res: dict, path: Path) -> None:
    groups = sorted(res["by_group"])
    codes = sorted({c for g in groups for c in res["by_group"][g]})
    lines = [f"# Serve fuzz ({res['requests']} requests, reranker `{res['reranker']}`)", "",
             "| group | " + " | ".join(codes) + " |", "|---|" + "---|" * len(codes)]  # fmt: skip
    for g in groups:
        lines.append(f"| {g} | " + " | ".join(str(res["by_group"][g].get(c, 0)) for c in codes) + " |")
    lines += ["", f"- failures (5xx other than a 503 with Retry-After): {len(res['failures'])}",
              f"- /healthz: {res['healthz']['ok']} of {res['healthz']['probes']} probes 200",
              f"- replica deaths: {res['replica_deaths']}",
              "- largest RSS growth during one request (MB): "
              + ", ".join(f"{k} {v:.1f}" for k, v in res["max_rss_growth_mb"].items()),
              f"- wall time {res['seconds']:.0f} s"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mma-dir", required=True)
    p.add_argument("--reranker", default="mma")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    from ray import serve

    from metamodal.raylogs import start_ray
    from metamodal.serving.config import ServeConfig
    from metamodal.serving.deployments import build_app
    from metamodal.serving.fuzz import fuzz_cases, run_fuzz
    from metamodal.workflows.serve_check import free_port

    start_ray()
    cfg = ServeConfig(mma_dir=str(a.mma_dir), reranker=a.reranker).resolved()
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config=QUIET)
    serve.run(build_app(cfg), name="fuzz", route_prefix="/", logging_config=QUIET)
    base = f"http://127.0.0.1:{port}"
    before = replicas("fuzz")
    watch = RssWatch(before)
    worst: dict[str, float] = {}

    def on_request(case, t0: float, t1: float) -> None:
        for k, v in watch.growth(t0, t1).items():
            worst[k] = max(worst.get(k, 0.0), v)

    cases = fuzz_cases(*catalogue_ids(cfg), n=a.n, seed=a.seed)
    t0 = time.perf_counter()
    print(f"[fuzz] {len(cases)} requests against {base}", flush=True)
    res = run_fuzz(base, cases, on_request=on_request)
    watch.stop.set()
    after = replicas("fuzz")
    res.update({"reranker": a.reranker, "seconds": time.perf_counter() - t0,
                "replica_deaths": len(set(before) - set(after)), "max_rss_growth_mb": worst,
                "replicas": {str(k): v for k, v in before.items()}})  # fmt: skip
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    write_md(res, out.with_suffix(".md"))
    print(out.with_suffix(".md").read_text(), flush=True)
    serve.shutdown()


if __name__ == "__main__":
    main()
