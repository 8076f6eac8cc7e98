"""One training step of each zoo model (loss, backward, Adam) on a real dataset's split and
features: the median seconds per step, in process, on ``--threads`` torch threads.

    python benchmarks/zoo_step_cost.py --dataset ../shared/data/ml100k-mm --features runs/ml100k-emb \
        --models dgmrec,lgmrec --out zoo_step_cost.json

What a zoo table costs is mostly a few models' steps (``zoo.py``'s timings table gives seconds
per epoch under Ray Train); this isolates the step so that a change to a model's maths can be
timed before and after on the same machine in one sitting (run it once per code tree, alone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from metamodal.data import load_dataset
from metamodal.data.splits import make_split
from metamodal.models import ZOO
from metamodal.train.data import attach_features, build_model_data, content_modalities


def step_seconds(model: torch.nn.Module, triples: list[tuple[torch.Tensor, ...]]) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    out = []
    for u, p, n in triples:
        t0 = time.perf_counter()
        opt.zero_grad()
        model.loss(u, p, n).backward()
        opt.step()
        out.append(time.perf_counter() - t0)
    return out


def batches(train, n: int, size: int, rng: np.random.Generator) -> list[tuple[torch.Tensor, ...]]:
    """``n`` uniform (user, positive, random negative) batches: the same for every model."""
    coo = train.tocoo()
    out = []
    for _ in range(n):
        i = rng.integers(0, coo.nnz, size)
        out.append(tuple(torch.from_numpy(np.asarray(a, np.int64)) for a in
                         (coo.row[i], coo.col[i], rng.integers(0, train.shape[1], size))))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--features", default=None, help="an extraction run (metamodal extract --out DIR)")
    ap.add_argument("--models", default="dgmrec,lgmrec")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per model (after 2 warm-up steps)")
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ds = attach_features(load_dataset(a.dataset), a.features)
    data, _ = build_model_data(ds, make_split(ds), content_modalities(ds, None), None)
    rows = {}
    for name in a.models.split(","):
        torch.manual_seed(0)
        model = ZOO[name](data, ZOO[name].Params())
        model.train()
        model.set_epoch(10)
        runs = step_seconds(model, batches(data.train, a.steps + 2, a.batch_size, np.random.default_rng(0)))[2:]
        rows[name] = {"median_s": statistics.median(runs), "steps_s": runs}
        print(f"{name:28s} {rows[name]['median_s'] * 1000:8.1f} ms a step (median of {len(runs)})")
    res = {"dataset": a.dataset, "features": a.features, "threads": a.threads, "batch_size": a.batch_size,
           "models": rows}  # fmt: skip
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
