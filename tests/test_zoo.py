"""The model zoo's plumbing: layered typed config, BPR triples, each model's forward and
backward pass, and a real Ray Train run (2 DDP workers) that survives a killed worker by
resuming from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from metamodal.models import ZOO, ModelData
from metamodal.train.config import ConfigError, load_config, parse_override
from metamodal.train.sampler import TripleSampler


def tiny() -> ModelData:
    rng = np.random.default_rng(0)
    m = sp.random(30, 40, density=0.15, format="csr", random_state=1, dtype=np.float32)
    m.data[:] = 1
    feats = {"text": (rng.normal(size=(40, 8)).astype(np.float32), rng.random(40) > 0.3)}
    return ModelData(30, 40, m, feats)


def test_layers_merge_in_order_and_bad_input_names_the_layer() -> None:
    cfg, params = load_config(
        "lightgcn", "/data/amazon-baby", ["train.lr=0.01", "params.n_layers=1"]
    )
    assert cfg.split.method == "given"  # dataset layer
    assert params.n_layers == 1 and params.embedding_dim == 64 and cfg.train.lr == 0.01
    assert parse_override("train.patience=5") == {"train": {"patience": 5}}
    with pytest.raises(ConfigError, match=r"override 'train.lrr=1'.*lrr"):
        load_config("bpr", "x", ["train.lrr=1"])
    with pytest.raises(ConfigError, match=r"train.lr"):
        load_config("bpr", "x", ["train.lr=-1"])
    with pytest.raises(ConfigError, match="params of bpr.*n_layers"):
        load_config("bpr", "x", ["params.n_layers=2"])
    with pytest.raises(ConfigError, match="unknown model"):
        load_config("nope", "x")


def test_triples_never_pick_a_positive_as_negative() -> None:
    data = tiny()
    s = TripleSampler(data.train, seed=0)
    u, p, n = s.epoch(0)
    assert len(u) == data.train.nnz and not s.is_positive(u, n).any()
    assert s.is_positive(u, p).all()
    a = s.epoch(3, rank=0, world=2)[0]
    b = s.epoch(3, rank=1, world=2)[0]
    assert len(a) == len(b) == data.train.nnz // 2


@pytest.mark.parametrize("name", sorted(ZOO))
def test_forward_backward(name: str) -> None:
    data = tiny()
    cls = ZOO[name]
    model = cls(data, cls.Params())
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8])
    loss = model(users, pos, neg)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [q.grad for q in model.parameters() if q.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    u, i = model.vectors()
    assert u.shape[0] == 30 and i.shape[0] == 40
    assert model.scorer()(torch.tensor([0, 5])).shape == (2, 40)


def test_ray_train_ddp_resumes_after_a_worker_dies(
    ray_session, small_shop: Path, tmp_path: Path
) -> None:
    from metamodal.train.runner import run_training

    res = run_training(
        "bpr",
        small_shop,
        tmp_path,
        ["train.epochs=4", "train.workers=2", "train.fail_at_epoch=2", "train.batch_size=512"],
    )
    assert (tmp_path / ".failed_once").exists()  # a worker really died at epoch 2
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # one row per epoch after the resume
    # resumed from the last checkpoint the controller had registered (epoch 1 or 2)
    assert len(res["resumed_from"]) == 1 and res["resumed_from"][0] in (1, 2)
    assert res["epochs"] == 4 and 1 <= res["best_epoch"] <= 4
    assert {"recall@20", "ndcg@20"} <= set(res["test"]) and (tmp_path / "curves.png").is_file()
    assert (tmp_path / "model.pt").is_file()


def test_lightgcn_propagation_equals_torch_geometric_lgconv() -> None:
    from torch_geometric.nn import LGConv

    from metamodal.models.lightgcn import SymmetricPropagate, normalised_adjacency

    data = tiny()
    adj = normalised_adjacency(data.train)
    x = torch.randn(70, 8, requires_grad=True)
    ours = SymmetricPropagate.apply(adj, SymmetricPropagate.apply(adj, x))
    conv = LGConv(normalize=False)
    ref = conv(conv(x, adj), adj)
    assert torch.allclose(ours, ref, atol=1e-6)
    w = torch.randn_like(ours)
    (g_ours,) = torch.autograd.grad((ours * w).sum(), x)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    assert torch.allclose(g_ours, g_ref, atol=1e-5)
