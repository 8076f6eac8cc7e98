"""Full-ranking evaluation speed: scoring + ranking + metrics of a popularity model over all
test users (training and validation items masked), on 2 threads like the CI machine.

    python benchmarks/eval_speed.py --dataset ../shared/data/amazon-baby --out eval_speed.json

Reports the median of ``--repeats`` runs (and every run) because these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from metamodal.data import load_dataset
from metamodal.data.splits import make_split
from metamodal.eval.protocol import evaluate_split
from metamodal.models import Popularity


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1024)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ds = load_dataset(a.dataset)
    split = make_split(ds)
    model = Popularity().fit(ds.matrix(split.train))
    runs, res = [], None
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        res = evaluate_split(
            model.full_scores, ds, split, "test", slices=False, batch_size=a.batch_size
        )
        runs.append(time.perf_counter() - t0)
    assert res is not None
    out = {
        "seconds": statistics.median(runs),
        "users": int(len(res.users)),
        "items": ds.n_items,
        "runs_seconds": runs,
        "first_run_seconds": runs[0],
        "threads": a.threads,
        "batch_size": a.batch_size,
        "popularity_test": {
            k: res.metrics[k] for k in ("recall@20", "ndcg@20", "recall@10", "ndcg@10")
        },
        "dataset": a.dataset,
        "split": split.summary(),
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({k: out[k] for k in ("seconds", "users", "items", "first_run_seconds")}))


if __name__ == "__main__":
    main()
