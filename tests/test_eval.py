"""The full-ranking evaluator against hand-computed cases and a naive reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from metamodal.eval import evaluate, per_user_metrics
from metamodal.eval.protocol import evaluate_split


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, its in enumerate(rows) for _ in its]
    c = [i for its in rows for i in its]
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(rows), n_items))


def fixed_scores(scores: np.ndarray):
    t = torch.tensor(scores, dtype=torch.float32)
    return lambda users: t[users].clone()


def test_hand_computed_case() -> None:
    # one user, 6 items; scores rank items 0>1>2>3>4>5; item 0 is a training item (masked);
    # positives: items 2 and 5. Ranking after masking: 1, 2, 3, 4, 5 -> hits at ranks 2 and 5.
    scores = np.array([[6, 5, 4, 3, 2, 1]], dtype=np.float32)
    res = evaluate(fixed_scores(scores), csr([[2, 5]], 6), csr([[0]], 6), ks=(1, 2, 5))
    m = res.metrics
    assert m["recall@1"] == 0 and m["recall@2"] == 0.5 and m["recall@5"] == 1.0
    assert m["precision@2"] == 0.5 and m["precision@5"] == 0.4
    assert m["hit@1"] == 0 and m["hit@2"] == 1
    assert math.isclose(m["ndcg@2"], (1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    idcg = 1 + 1 / math.log2(3)
    assert math.isclose(m["ndcg@5"], (1 / math.log2(3) + 1 / math.log2(6)) / idcg)
    # MAP@5 = (P@2 + P@5) / min(2, 5) = (1/2 + 2/5) / 2
    assert math.isclose(m["map@5"], (0.5 + 0.4) / 2)
    # ideal DCG is capped at min(|positives|, K): with K=1 a perfect ranking scores 1
    assert per_user_metrics(np.array([[True]]), np.array([2]), (1,))["ndcg@1"][0] == 1.0


def naive(
    scores: np.ndarray, pos: list[set[int]], excl: list[set[int]], ks: tuple[int, ...]
) -> dict[str, float]:
    """A deliberately plain implementation: python loops, sets, stable sort."""
    sums: dict[str, float] = {}
    n = 0
    for u, p in enumerate(pos):
        if not p:
            continue
        n += 1
        order = [
            i
            for i in sorted(range(scores.shape[1]), key=lambda i: -scores[u, i])
            if i not in excl[u]
        ]
        for k in ks:
            top = order[:k]
            h = [1 if i in p else 0 for i in top]
            dcg = sum(x / math.log2(r + 2) for r, x in enumerate(h))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(p), k)))
            ap = sum(h[r] * sum(h[: r + 1]) / (r + 1) for r in range(len(h))) / min(len(p), k)
            vals = {
                "recall": sum(h) / len(p),
                "ndcg": dcg / idcg,
                "precision": sum(h) / k,
                "map": ap,
                "hit": float(any(h)),
            }
            for name, v in vals.items():
                sums[f"{name}@{k}"] = sums.get(f"{name}@{k}", 0.0) + v
    return {k: v / n for k, v in sums.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = 37, 80
    scores = (
        rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(np.float32)
    )  # no ties
    pos, excl = [], []
    for u in range(n_users):
        items = rng.permutation(n_items)
        k_pos = int(rng.integers(0, 8)) if u % 5 else 0  # some users have no positives
        pos.append(set(items[:k_pos].tolist()))
        excl.append(set(items[k_pos : k_pos + int(rng.integers(0, 20))].tolist()))
    ks = (1, 5, 10, 20)
    res = evaluate(
        fixed_scores(scores),
        csr([sorted(p) for p in pos], n_items),
        csr([sorted(e) for e in excl], n_items),
        ks,
        batch_size=8,
    )
    ref = naive(scores, pos, excl, ks)
    assert len(res.users) == sum(1 for p in pos if p)
    for k, v in ref.items():
        assert math.isclose(res.metrics[k], v, rel_tol=1e-9, abs_tol=1e-12), k


def test_masked_items_never_ranked_and_slices() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 20, 30
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    excl = [list(range(u % 5, u % 5 + 10)) for u in range(n_users)]
    pos = [[20 + u % 10, 29] for u in range(n_users)]
    from metamodal.eval import top_k

    users = np.arange(n_users)
    top = top_k(fixed_scores(scores), users, csr(excl, n_items), 20)
    for u in users:
        assert not set(top[u]) & set(excl[u])
    cold = np.zeros(n_items, bool)
    cold[29] = True
    res = evaluate(
        fixed_scores(scores),
        csr(pos, n_items),
        csr(excl, n_items),
        (5, 10),
        user_slices={"even": users % 2 == 0},
        item_slices={"cold": cold, "none": np.zeros(n_items, bool)},
    )
    assert res.slice_users == {"even": 10, "cold": 20, "none": 0}
    ref = naive(scores, [{29} for _ in users], [set(e) for e in excl], (5, 10))
    assert math.isclose(res.slices["cold"]["recall@10"], ref["recall@10"])
    ref_even = naive(scores[::2], [set(p) for p in pos[::2]], [set(e) for e in excl[::2]], (5, 10))
    assert math.isclose(res.slices["even"]["ndcg@10"], ref_even["ndcg@10"])


def test_protocol_masks_valid_at_test_time(small_shop) -> None:
    from metamodal.data import load_dataset
    from metamodal.data.splits import make_split
    from metamodal.models import Popularity, Random

    ds = load_dataset(small_shop)
    split = make_split(ds, "mmrec", seed=0)

    def oracle(users: torch.Tensor) -> torch.Tensor:
        """Scores the user's validation items highest: at test time they must be masked out."""
        s = torch.zeros(len(users), ds.n_items)
        v = ds.matrix(split.valid)[users.numpy()].toarray()
        return s + torch.from_numpy(v) * 10 + torch.rand(len(users), ds.n_items)

    res_valid = evaluate_split(oracle, ds, split, "valid", slices=False)
    res_test = evaluate_split(oracle, ds, split, "test", slices=False)
    assert res_valid.metrics["recall@20"] > 0.99 and res_test.metrics["recall@20"] < 0.2
    pop = Popularity().fit(ds.matrix(split.train))
    rnd = Random(seed=0).fit(ds.matrix(split.train))
    r_pop = evaluate_split(pop.full_scores, ds, split, "test")
    r_rnd = evaluate_split(rnd.full_scores, ds, split, "test")
    assert r_rnd.metrics == evaluate_split(rnd.full_scores, ds, split, "test").metrics  # seeded
    assert {"items_without_image", "items_without_text"} <= set(r_pop.slices)
    assert (
        "users_le5_train" not in r_pop.slices
    )  # every shop user keeps > 5 training items: empty slices are left out
    with pytest.raises(ValueError, match="part must be"):
        evaluate_split(pop.full_scores, ds, split, "train")
