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
from pydantic import BaseModel

from metamodal.config import ConfigError, parse_override
from metamodal.models import ZOO, ModelData
from metamodal.train.config import load_config
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
    with pytest.raises(ConfigError, match="unknown metric 'recal@20'.*recall@20"):
        load_config("bpr", "x", ["train.valid_metric=recal@20"])  # before Ray starts


def test_a_datasets_tuned_values_come_after_the_model_layer(monkeypatch) -> None:
    """A dataset's ``models.<model>`` section is the last package layer: it beats the model's
    YAML, leaves other models alone, and a bad value names it."""
    from metamodal.train import config as config_mod

    layers = {"datasets/shopx.yaml": {"train": {"lr": 0.002},
                                      "models": {"margo": {"params": {"alpha": 0.5}, "train": {"patience": 7}}}},
              "models/margo.yaml": {"train": {"patience": 30}}}  # fmt: skip
    monkeypatch.setattr(config_mod, "_package_yaml", lambda rel: layers.get(rel, {}))
    cfg, params = load_config("margo", "/data/shopx")
    assert (params.alpha, cfg.train.patience, cfg.train.lr) == (0.5, 7, 0.002)
    cfg, params = load_config("bpr", "/data/shopx")
    assert cfg.train.patience == 20 and cfg.train.lr == 0.002
    layers["datasets/shopx.yaml"]["models"]["margo"]["train"]["patience"] = 0
    with pytest.raises(ConfigError, match=r"datasets/shopx.yaml models.margo: train.patience"):
        load_config("margo", "/data/shopx")


def test_no_package_yaml_repeats_a_default_of_the_code() -> None:
    """One source of truth per default: a YAML value equal to the code's default is a copy that
    drifts (MARGO's alpha once read 0.01 in YAML and 0.1 in code)."""
    from importlib import resources

    import yaml

    from metamodal.train.config import RunConfig

    def copies(layer: dict, model: BaseModel, where: str) -> list[str]:
        out = []
        for key, v in layer.items():
            field = type(model).model_fields.get(key)
            assert field is not None, f"{where}: unknown key {key}"
            default = getattr(model, key)
            if isinstance(v, dict) and isinstance(default, BaseModel):
                out += copies(v, default, f"{where}.{key}")
            elif v == default:
                out.append(f"{where}.{key}={v!r}")
        return out

    root = resources.files("metamodal") / "configs"
    found = []
    for sub in ("datasets", "models"):
        for f in (root / sub).iterdir():
            layer = yaml.safe_load(f.read_text()) or {}
            model = f.name.removesuffix(".yaml") if sub == "models" else "bpr"
            base = RunConfig(model=model, dataset="x")
            found += copies({k: v for k, v in layer.items() if k not in ("params", "models")}, base, f"{sub}/{f.name}")
            if "params" in layer:
                found += copies(layer["params"], ZOO[model].Params(), f"{sub}/{f.name} params")
    assert not found, f"values the code already defaults to: {found}"


def test_a_diverging_loss_stops_the_run_naming_the_batch_and_is_never_kept(
    ray_session, small_shop: Path, tmp_path: Path
) -> None:
    """A learning rate no run survives: both DDP workers stop at the same batch (no hang), the
    error names it, and nothing of the run is kept as a result or a model."""
    from metamodal.train.runner import TrainingDiverged, run_training

    with pytest.raises(TrainingDiverged, match=r"bpr: epoch \d+, batch \d+ of \d+: loss (nan|inf)"):
        run_training("bpr", small_shop, tmp_path, ["train.epochs=6", "train.workers=2", "train.lr=1e30",
                                                   "train.batch_size=256", "train.retrieval_check=false"])  # fmt: skip
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "results.json").exists()
    log = tmp_path / "metrics.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
    assert all(np.isfinite(r["loss"]) for r in rows)  # the diverged epoch is not logged as one


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


def test_zoo_runs_train_side_by_side_and_a_failure_is_named_after_the_others_end(
    ray_session, small_shop: Path, tmp_path: Path
) -> None:
    """Two runs at once, each on its CPU share; a third that cannot start does not stop them,
    and the error names it."""
    from metamodal.train.runner import run_side_by_side

    runs = {"bpr": tmp_path / "bpr", "no_such_model": tmp_path / "bad", "lightgcn": tmp_path / "lightgcn"}
    with pytest.raises(RuntimeError, match=r"zoo no_such_model failed \(1 of 3 runs did\).*no_such_model"):
        run_side_by_side(runs, small_shop, ["train.epochs=1", "train.batch_size=1024",
                                            "train.retrieval_check=false"], concurrent=2)  # fmt: skip
    for m in ("bpr", "lightgcn"):
        assert json.loads((tmp_path / m / "results.json").read_text())["epochs"] == 1
    # side by side: the second run was claimed before the first one ended
    assert (tmp_path / "lightgcn" / "config.json").stat().st_mtime < (tmp_path / "bpr" / "results.json").stat().st_mtime


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
    # resumed from the last checkpoint the controller had registered (epoch 1 or 2) — or, when
    # the worker died before it had registered any (it happens under load), from the start
    assert res.resumed_from in ([], [1], [2])
    assert res.epochs == 4 and 1 <= res.best_epoch <= 4
    assert {"recall@20", "ndcg@20"} <= set(res.test) and (tmp_path / "curves.png").is_file()
    assert (tmp_path / "model.pt").is_file()


def test_metrics_log_is_trimmed_to_the_resumed_epoch_and_survives_a_half_written_line(
    tmp_path, capsys
) -> None:
    from metamodal.runlog import read_metrics
    from metamodal.runlog import trim_log as _trim_log

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n{"epo')
    assert read_metrics(log) == [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]
    assert "1 half-written line(s) dropped" in capsys.readouterr().out  # counted, and said
    assert _trim_log(log, 2) == 2 and log.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    assert _trim_log(log, 0) == 2 and log.read_text() == ""  # restarted with no checkpoint
    assert _trim_log(tmp_path / "absent.jsonl", 0) == 0


def test_run_log_rewinds_to_the_resume_point_with_or_without_a_checkpoint(tmp_path, capsys) -> None:
    """The driver-side writer of the metrics log: a resumed attempt rewinds it to its
    checkpoint's epoch, one restarted with no checkpoint rewinds it to nothing — whichever
    happened, the finished log has one row per epoch (the two cases a worker death can give,
    independent of when the controller registered its last checkpoint)."""
    from metamodal.runlog import FOR_DRIVER, RunLog

    def attempt(log: RunLog, start: int, end: int) -> None:
        rows = [{"epoch": e} for e in range(start + 1, end + 1)]
        metrics = [{"epoch": end, FOR_DRIVER: {"rewind": start, "rows": rows}}, {"epoch": end}]
        log.after_report(None, metrics, None)
        assert FOR_DRIVER not in metrics[0]  # Tune and the result never see it

    def epochs(d: Path) -> list[int]:
        return [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text().splitlines()]

    for resumed_at, note in ((2, ""), (0, "restarted from epoch 1")):
        d = tmp_path / f"from{resumed_at}"
        log = RunLog(str(d), "metrics.jsonl")
        attempt(log, 0, 3)  # the lost attempt got to epoch 3
        attempt(log, resumed_at, 4)
        assert epochs(d) == [1, 2, 3, 4]
        assert note in capsys.readouterr().out


def test_lightgcn_propagation_equals_torch_geometric_lgconv() -> None:
    from torch_geometric.nn import LGConv

    from metamodal.models.graphs import SymmetricPropagate, normalised_adjacency

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


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_faiss_recall_against_exact_search(kind: str) -> None:
    from metamodal.retrieval.index import IndexSpec, ItemIndex, exact_top_k, recall_vs_exact

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32))
    items = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 32))).astype(
        np.float32
    )
    queries = (centres[rng.integers(0, 20, 200)] + 0.3 * rng.normal(size=(200, 32))).astype(
        np.float32
    )
    index = ItemIndex(items, IndexSpec(kind=kind, nprobe=8, ef_search=128))
    r = recall_vs_exact(index, queries, items, 20)
    assert r == 1.0 if kind == "flat" else r > 0.9
    _, got = ItemIndex(items, IndexSpec(kind="flat")).search(queries[:5], 10)
    assert (got == exact_top_k(queries[:5], items, 10)).all()


def test_cold_start_user_served_from_content() -> None:
    from metamodal.retrieval.index import content_index

    rng = np.random.default_rng(1)
    feats = rng.normal(size=(100, 16)).astype(np.float32)
    present = np.ones(100, bool)
    present[::3] = False  # items without the modality are not in the content index
    index = content_index(feats, present)
    _, items = index.search(feats[[1, 2, 4]], 5)
    assert items[:, 0].tolist() == [1, 2, 4] and not np.isin(items, np.arange(0, 100, 3)).any()


def test_margo_reliability_and_confidence_by_hand() -> None:
    from metamodal.models.margo import calibration_loss, confidence, reliability

    d = torch.tensor([[1.0, 0.0, -1.0]])
    e = np.exp([1.0, 0.0, -1.0])
    assert torch.allclose(
        reliability(d, torch.ones(1, 3, dtype=torch.bool)),
        torch.tensor(e / e.sum(), dtype=torch.float32)[None],
        atol=1e-6,
    )
    z = reliability(d, torch.tensor([[True, True, False]]))  # a missing source gets no share
    assert torch.allclose(
        z, torch.tensor([[np.e / (np.e + 1), 1 / (np.e + 1), 0.0]], dtype=torch.float32), atol=1e-6
    )
    assert abs(float(confidence(torch.tensor(2.0), 1.0)) - 1 / (1 + np.exp(-2))) < 1e-6
    assert abs(float(confidence(torch.tensor(2.0), 4.0)) - 1 / (1 + np.exp(-0.5))) < 1e-6
    mask = torch.tensor([[True, True, False]])
    assert (
        float(calibration_loss(z.clone(), z, torch.ones(1), mask)) < 1e-6
    )  # w = z: nothing to fix
    w = torch.tensor([[0.5, 0.5, 0.0]], requires_grad=True)
    gamma = torch.tensor([0.5])
    loss = calibration_loss(w, z, gamma, mask)
    kl = sum(float(z[0, s]) * np.log(float(z[0, s]) / 0.5) for s in (0, 1))
    assert abs(float(loss) - 0.5 * kl) < 1e-6
    loss.backward()
    assert w.grad is not None and w.grad[0, 2] == 0  # the missing source is left alone


def test_margo_second_stage_trains_the_gate_and_drops_missing_sources() -> None:
    from metamodal.models.margo import MARGO

    data = tiny()
    model = MARGO(data, MARGO.Params(stage1_epochs=1))
    model.set_epoch(0)
    _, _, w1, mask = model.fused()
    assert torch.equal(w1, mask.float())  # stage 1: plain sum of the present sources
    model.set_epoch(1)
    model(torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8])).backward()
    assert model.gate.weight.grad is not None and model.gate.weight.grad.abs().sum() > 0
    _, _, w2, mask = model.fused()
    # a distribution over the present sources, scaled by their count (stage 1's scale)
    assert torch.allclose(w2.sum(1), mask.sum(1).float()) and (w2[~mask] == 0).all()


def test_magnet_entropy_schedule_switches_from_coverage_to_specialisation() -> None:
    import math

    from metamodal.models.magnet import MAGNET, EntropySchedule, role_templates

    t, names = role_templates(3, 0.6)
    assert t.shape == (7, 3) and torch.allclose(t.sum(1), torch.ones(7))
    assert names[:3] == ["dominant:0", "dominant:1", "dominant:2"] and names[3] == "balanced"
    s = EntropySchedule(7, ratio=0.9, patience=2, max_stage1=30)
    high, low = 0.95 * math.log(7), 0.5 * math.log(7)
    assert s.next_stage(1, 0, low, epoch=0) == (1, 0)
    assert s.next_stage(1, 0, high, epoch=1) == (1, 1)  # one epoch of coverage is not enough
    assert s.next_stage(1, 1, low, epoch=2) == (1, 0)  # the streak resets
    assert s.next_stage(1, 1, high, epoch=3) == (2, 2)  # two in a row: specialise
    assert s.next_stage(2, 2, low, epoch=4)[0] == 2  # never back
    assert s.next_stage(1, 0, low, epoch=29)[0] == 2  # the stage-1 budget ends it
    model = MAGNET(tiny(), MAGNET.Params(switch_patience=1, max_stage1_epochs=100))
    model.set_epoch(0)
    model(torch.tensor([0, 1]), torch.tensor([3, 4]), torch.tensor([6, 7])).backward()
    with torch.no_grad():  # force a uniform router: usage entropy = log E
        model.router.weight.zero_()
        model.router.bias.zero_()
    model._usage = [torch.full((7,), 1 / 7)]
    model.set_epoch(1)
    assert int(model.stage) == 2 and "stage" in model.state_dict()


def test_freedom_prunes_hub_edges_first() -> None:
    from metamodal.models.graphs import degree_sensitive_sample

    # user 0 is a hub (30 items); users 1..30 have one item each
    rows = [0] * 30 + list(range(1, 31))
    cols = list(range(30)) + list(range(30))
    train = sp.csr_matrix((np.ones(60, np.float32), (rows, cols)), shape=(31, 30))
    kept = [degree_sensitive_sample(train, 0.5, np.random.default_rng(s)) for s in range(20)]
    hub = np.mean([k[0].nnz for k in kept]) / 30
    leaves = np.mean([k[1:].nnz for k in kept]) / 30
    assert all(k.nnz == 30 for k in kept) and hub < leaves


def test_minibatch_propagation_equals_full_and_samples_within_the_fanout() -> None:
    """The mini-batched path (memory per batch, not per graph) is exact without a fanout."""
    from metamodal.models.lightgcn import LightGCN

    data = tiny()
    torch.manual_seed(0)
    full = LightGCN(data, LightGCN.Params(embedding_dim=8, n_layers=3))
    torch.manual_seed(0)
    mb = LightGCN(
        data, LightGCN.Params(embedding_dim=8, n_layers=3, propagation="minibatch", chunk=7)
    )
    u1, i1 = full.vectors()
    u2, i2 = mb.vectors()
    torch.testing.assert_close(u1, u2)
    torch.testing.assert_close(i1, i2)
    users, pos, neg = torch.tensor([0, 3, 5]), torch.tensor([1, 2, 9]), torch.tensor([4, 7, 8])
    l1, l2 = full(users, pos, neg), mb(users, pos, neg)
    torch.testing.assert_close(l1, l2)
    l1.backward()
    l2.backward()
    torch.testing.assert_close(full.user.weight.grad, mb.user.weight.grad)
    sampled = LightGCN(
        data, LightGCN.Params(embedding_dim=8, n_layers=2, propagation="minibatch", fanout=2)
    )
    assert torch.isfinite(sampled(users, pos, neg))
    from metamodal.models.minibatch import _sample_rows, normalised_adjacency_scipy

    a = normalised_adjacency_scipy(data.train)
    s = _sample_rows(a, 2, np.random.default_rng(0))
    deg, kept = np.diff(a.indptr), np.diff(s.indptr)
    assert (kept == np.minimum(deg, 2)).all()
    r = int(np.flatnonzero(deg > 2)[0])  # a sampled row: its kept edges, reweighted deg/2
    lo, hi, slo, shi = a.indptr[r], a.indptr[r + 1], s.indptr[r], s.indptr[r + 1]
    orig = dict(zip(a.indices[lo:hi], a.data[lo:hi], strict=True))
    for c, v in zip(s.indices[slo:shi], s.data[slo:shi], strict=True):
        assert v == pytest.approx(orig[c] * deg[r] / 2)


def test_dragon_user_graph_is_a_softmax_over_co_occurrence_counts() -> None:
    from metamodal.models.graphs import cooccurrence_topk

    # user 0 shares two items with user 1 and one with user 2; user 3 shares nothing
    r = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32))
    g = cooccurrence_topk(r, k=2).toarray()
    assert np.allclose(np.diag(g), 0) and np.allclose(g[3], 0)
    e = np.exp(1.0)
    assert np.allclose(g[0, [1, 2]], [e / (e + 1), 1 / (e + 1)]) and np.allclose(g.sum(1)[:3], 1)
    assert np.allclose(cooccurrence_topk(r, k=1).toarray()[0], [0, 1, 0, 0])


@pytest.mark.parametrize("name", ["dragon", "lgmrec", "dgmrec"])
def test_graph_models_never_read_an_absent_modality_row(name: str) -> None:
    """What an item lacks (its row of a modality marked absent) changes neither DRAGON's kNN
    neighbours nor LGMRec's hyperedges nor DGMRec's generated rows and refreshed graph, nor any
    vector."""
    data = tiny()
    x, present = data.features["text"]
    absent = np.flatnonzero(~present)
    noisy = x.copy()
    noisy[absent] = np.random.default_rng(5).normal(size=(len(absent), x.shape[1])) * 100
    vecs = []
    for feats in (x, noisy):
        torch.manual_seed(0)
        m = ZOO[name](ModelData(data.n_users, data.n_items, data.train, {"text": (feats, present)}), ZOO[name].Params())
        if name == "dragon":
            ig = m.item_graph.a.to_dense()
            assert ig[absent].abs().sum() == 0 and ig[:, absent].abs().sum() == 0
        if name == "dgmrec":
            m.set_epoch(m.p.refresh_from)  # absent rows' graph edges from generated features
        m.eval()
        vecs.append([v.detach() for v in m.vectors()])
    assert all(torch.equal(a, b) for a, b in zip(*vecs, strict=True))


def test_lgmrec_contrasts_two_modalities_global_embeddings() -> None:
    """With two modalities the InfoNCE term is there (a positive addition) and trains both
    modalities' hyperedges."""
    data = tiny()
    rng = np.random.default_rng(2)
    data.features["image"] = (rng.normal(size=(40, 6)).astype(np.float32), rng.random(40) > 0.2)
    batch = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8])
    losses = {}
    for w in (0.0, 1.0):
        torch.manual_seed(0)
        m = ZOO["lgmrec"](data, ZOO["lgmrec"].Params(cl_weight=w))
        torch.manual_seed(1)  # the same Gumbel noise and dropout
        losses[w] = m(*batch)
    assert losses[1.0] > losses[0.0]
    losses[1.0].backward()
    assert all(h.weight.grad is not None and h.weight.grad.abs().sum() > 0 for h in m.hyper)


def test_dgmrec_generates_an_absent_modality_from_the_items_other_one() -> None:
    """An item without text gets a decoded text row that follows its image (its own row is
    never read); a present row is the item's own; from ``refresh_from`` on an absent item's
    graph row leaves the bare self-loop for its generated neighbours, and a model loaded from
    the weights scores exactly as the one that trained."""
    data = tiny()
    rng = np.random.default_rng(3)
    img_present = np.ones(40, bool)
    data.features["image"] = (rng.normal(size=(40, 6)).astype(np.float32), img_present)
    x, present = data.features["text"]
    j = int(np.flatnonzero(~present)[0])
    torch.manual_seed(0)
    m = ZOO["dgmrec"](data, ZOO["dgmrec"].Params())
    filled = m._filled()[0]
    assert torch.equal(filled[present], torch.from_numpy(x[present]))
    assert filled[j].abs().sum() > 0  # decoded, not the zero row it came with
    other = ModelData(data.n_users, data.n_items, data.train, {
        "text": data.features["text"], "image": (data.features["image"][0] * np.where(np.arange(40) == j, -3, 1)[:, None], img_present)})  # fmt: skip
    m2 = ZOO["dgmrec"](other, ZOO["dgmrec"].Params())
    m2.load_state_dict(m.state_dict())
    assert not torch.allclose(m2._filled()[0][j], filled[j])  # it reads the item's image
    row = lambda g: g.a.to_dense()[j]  # noqa: E731
    assert row(m.graphs[0])[j] == 1 and row(m.graphs[0]).abs().sum() == 1
    m.set_epoch(m.p.refresh_from)
    m.vectors()  # the epoch's first pass generates and refreshes
    r = row(m.graphs[0])
    loaded = ZOO["dgmrec"](data, ZOO["dgmrec"].Params())
    loaded.load_state_dict(m.state_dict())  # as the Serve and MMA scorers build a run's model
    assert all(torch.equal(a, b) for a, b in zip(loaded.vectors(), m.vectors(), strict=True))
    assert r[j] == pytest.approx(1 - m.p.refresh_blend) and (r > 0).sum() == 1 + m.p.knn_k
    assert r.sum() == pytest.approx(1.0)
