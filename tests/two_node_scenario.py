"""Two Ray nodes on this machine (``ray.cluster_utils.Cluster``: two raylets, each with its
own CPU and temp dir) and run storage on a local S3 server. Run by ``test_two_node.py`` in a
process of its own, because a process holds one Ray connection and the suite's own Ray is up.

1. A zoo training with 2 workers spread over both nodes (``STRICT_SPREAD``) checkpoints to the
   bucket; the node of one worker is removed mid-run (a spot preemption), a new node joins (the
   autoscaler's replacement), and the run resumes from its last checkpoint in the bucket.
2. A Serve app with one replica per node loads that run from the bucket; the head node's
   Ingress replica is killed, and the replica on the other node keeps answering.

Writes its timeline as JSON to the path given as the only argument.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

BUCKET = "metamodal-two-node"


def start_s3() -> str:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_REGION="us-east-1", METAMODAL_STORAGE=f"s3://{BUCKET}/runs",
                      METAMODAL_STORAGE_ENDPOINT=endpoint)  # fmt: skip
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    return endpoint


def epochs_logged(out: Path) -> list[int]:
    log = out / "metrics.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return [json.loads(x)["epoch"] for x in lines if x.strip()]


def train_with_a_node_lost(cluster, shop: Path, out: Path, t0: float) -> dict:
    """Train in a thread; when epoch 2 is logged, remove the node that is not the driver's,
    then add a fresh one."""
    import ray

    from metamodal.train.runner import run_training

    args = ["train.epochs=6", "train.workers=2", "train.placement_strategy=STRICT_SPREAD",
            "train.batch_size=64", "train.max_failures=3", "train.retrieval_check=false"]  # fmt: skip
    box: dict = {}

    def go() -> None:
        try:
            box["result"] = run_training("bpr", shop, out, args)
        except BaseException as e:  # reported by the caller
            box["error"] = repr(e)

    worker = threading.Thread(target=go)
    worker.start()
    while len(epochs_logged(out)) < 2 and worker.is_alive():
        time.sleep(0.1)
    lost = epochs_logged(out)
    nodes_before = sum(n["Alive"] for n in ray.nodes())
    victim = cluster.list_all_nodes()[1]
    t_remove = time.perf_counter() - t0
    cluster.remove_node(victim)
    cluster.add_node(num_cpus=1)
    t_added = time.perf_counter() - t0
    worker.join(timeout=180)
    if "result" not in box:
        raise RuntimeError(f"training did not finish: {box.get('error', 'timed out')}")
    res = box["result"]
    return {"nodes_at_start": nodes_before, "removed_after_epoch": lost[-1] if lost else 0,
            "removed_at_s": t_remove, "replacement_added_at_s": t_added,
            "resumed_from": res.resumed_from, "epochs_logged": epochs_logged(out),
            "finished_at_s": time.perf_counter() - t0, "best_epoch": res.best_epoch,
            "valid_recall@20": res.valid["recall@20"]}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_with_a_replica_killed(run_dir: Path, shop: Path) -> dict:
    """Two Ingress replicas, one per node, loading the run from the bucket; the head node's is
    killed while a client keeps asking."""
    import ray
    import ray._private.state as gcs  # actors and their nodes without the dashboard
    import requests
    from ray import serve

    from metamodal.data import load_dataset
    from metamodal.serving.config import ServeConfig
    from metamodal.serving.deployments import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    cfg = ServeConfig(retriever_run=str(run_dir), reranker="none")
    t_deploy = time.perf_counter()
    serve.run(build_app(cfg, replicas=2, max_replicas_per_node=1), name="rec", route_prefix="/")
    deployed_s = time.perf_counter() - t_deploy
    pulled = (run_dir / "model.pt").is_file()  # gone before the deploy: a replica pulled it
    head = ray.get_runtime_context().get_node_id()
    ingress = {a["Name"]: a["Address"]["NodeID"] for a in gcs.actors().values()
               if a["State"] == "ALIVE" and "Ingress" in (a["Name"] or "")
               and a["ActorClassName"].startswith("ServeReplica")}  # fmt: skip
    nodes = sorted(set(ingress.values()))
    user = str(load_dataset(shop).user_ids[0])
    url = f"http://127.0.0.1:{port}/recommend"

    def ask() -> int:
        try:
            return requests.post(url, json={"user_id": user, "k": 5}, timeout=10).status_code
        except requests.RequestException:
            return 0

    before = [ask() for _ in range(5)]
    victim = next(name for name, node in ingress.items() if node == head)
    t_kill = time.perf_counter()
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    codes, first_ok = [], None
    while time.perf_counter() - t_kill < 5 or first_ok is None:
        codes.append(ask())
        if codes[-1] == 200 and first_ok is None:
            first_ok = time.perf_counter() - t_kill
        if time.perf_counter() - t_kill > 60:
            break
    serve.shutdown()
    return {"deployed_s": deployed_s, "run_pulled_from_bucket": pulled, "ingress_nodes": len(nodes), "answers_before": before,
            "after_kill": {str(c): codes.count(c) for c in sorted(set(codes))},
            "first_answer_after_kill_s": first_ok}  # fmt: skip


def main(report: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from metamodal.data.synth import SynthConfig, generate
    from metamodal.raylogs import storage_env

    work = report.parent
    start_s3()
    shop = generate(work / "shop", SynthConfig(n_items=600, n_users=500, seed=5, image_size=16),
                    progress=False)  # fmt: skip
    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})  # fmt: skip
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, runtime_env={"env_vars": storage_env()})
    cluster.wait_for_nodes()
    out = {"cluster_up_s": time.perf_counter() - t0}
    run_dir = work / "bpr"
    out["train"] = train_with_a_node_lost(cluster, shop, run_dir, t0)
    print(json.dumps(out["train"]), flush=True)
    shutil.rmtree(run_dir)  # Serve finds the run in the bucket only
    out["serve"] = serve_with_a_replica_killed(run_dir, shop)
    out["total_s"] = time.perf_counter() - t0
    ray.shutdown()
    cluster.shutdown()
    report.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
