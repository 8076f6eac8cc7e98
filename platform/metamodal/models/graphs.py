"""Graph construction shared by the graph models: the normalised user–item adjacency (with an
optional item–item block), content kNN item graphs, FREEDOM's degree-sensitive edge pruning,
and a symmetric sparse propagation whose backward needs no transpose."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


def to_torch_csr(a: sp.spmatrix) -> torch.Tensor:
    """scipy CSR -> torch CSR; scipy already guarantees the invariants, so torch's check is
    off (explicitly: else every worker warns), and the "beta" notice is silenced once here."""
    a = a.tocsr().astype(np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(a.indptr.astype(np.int64)),
            torch.from_numpy(a.indices.astype(np.int64)),
            torch.from_numpy(a.data),
            size=a.shape,
            check_invariants=False,
        )


def sym_normalise(a: sp.spmatrix) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 (rows with no edges stay zero)."""
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.zeros_like(deg, dtype=np.float32)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    return (sp.diags(inv) @ a @ sp.diags(inv)).tocsr()


def row_mean(a: sp.spmatrix) -> sp.csr_matrix:
    """Each row divided by its sum: a user's mean over their items (rows with none stay zero)."""
    counts = np.asarray(a.sum(1)).ravel()
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0).astype(np.float32)
    return (sp.diags(inv) @ a).tocsr()


def bipartite(train: sp.csr_matrix, item_item: sp.spmatrix | None = None) -> sp.csr_matrix:
    """[[0, R], [Rᵀ, S]] (S: optional item–item block), unnormalised."""
    r = (train > 0).astype(np.float32)
    return sp.bmat([[None, r], [r.T, item_item]], format="csr", dtype=np.float32)


def normalised_adjacency(
    train: sp.csr_matrix, item_item: sp.spmatrix | None = None
) -> torch.Tensor:
    """The symmetric-normalised graph as a torch sparse CSR tensor."""
    n_u, n_i = train.shape
    a = bipartite(train, item_item)
    if a.shape != (n_u + n_i, n_u + n_i):
        raise ValueError(f"adjacency shape {a.shape} != {(n_u + n_i, n_u + n_i)}")
    return to_torch_csr(sym_normalise(a))


def knn_graph(
    features: np.ndarray, present: np.ndarray, k: int, chunk: int = 4096
) -> sp.csr_matrix:
    """Exact cosine kNN among the items that have the modality (chunked matmul); items without
    it get no edges — a missing modality adds no neighbours rather than imputed ones."""
    n = len(present)
    rows = np.flatnonzero(present)
    if len(rows) <= 1:
        return sp.csr_matrix((n, n), dtype=np.float32)
    x = torch.nn.functional.normalize(torch.from_numpy(features[rows].astype(np.float32)), dim=1)
    kk = min(k + 1, len(rows))
    nbrs = []
    for s in range(0, len(rows), chunk):
        sims = x[s : s + chunk] @ x.T
        sims[torch.arange(sims.shape[0]), torch.arange(s, s + sims.shape[0])] = -float("inf")
        nbrs.append(sims.topk(kk - 1, dim=1).indices.numpy())
    nb = np.concatenate(nbrs)
    src = np.repeat(rows, kk - 1)
    dst = rows[nb.ravel()]
    return sp.csr_matrix((np.ones(len(src), np.float32), (src, dst)), shape=(n, n))


def degree_sensitive_sample(
    train: sp.csr_matrix, keep_frac: float, rng: np.random.Generator
) -> sp.csr_matrix:
    """FREEDOM's edge pruning: keep ``keep_frac`` of the user–item edges, drawn without
    replacement with probability ∝ 1/sqrt(deg(u)·deg(i)) — hubs lose edges first."""
    coo = (train > 0).tocoo()
    du = np.asarray((train > 0).sum(1)).ravel()[coo.row]
    di = np.asarray((train > 0).sum(0)).ravel()[coo.col]
    p = 1.0 / np.sqrt(du * di)
    n_keep = max(1, int(round(keep_frac * len(p))))
    # Gumbel top-k: a weighted draw without replacement in O(E)
    keys = np.log(p) - np.log(-np.log(rng.random(len(p))))
    keep = np.argpartition(-keys, n_keep - 1)[:n_keep]
    return sp.csr_matrix(
        (np.ones(n_keep, np.float32), (coo.row[keep], coo.col[keep])), shape=train.shape
    )


class SymmetricPropagate(torch.autograd.Function):
    """y = Â x for a symmetric sparse Â: the gradient is Â g, no transpose needed."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.adj @ grad


class Spmm(torch.autograd.Function):
    """y = A x for a sparse A whose transpose is kept beside it: the gradient is Aᵀ g, with no
    CSR transpose (slow) in every backward pass."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.a_t = a_t
        return a @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, ctx.a_t @ grad


class SparseOp:
    """A fixed sparse matrix (scipy) as torch CSR with its transpose, applied by ``Spmm``."""

    def __init__(self, a: sp.spmatrix) -> None:
        self.a, self.a_t = to_torch_csr(a), to_torch_csr(a.T)

    def to(self, device: torch.device) -> SparseOp:
        if self.a.device != device:
            self.a, self.a_t = self.a.to(device), self.a_t.to(device)
        return self

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return Spmm.apply(self.to(x.device).a, self.a_t, x)


def propagate(adj: torch.Tensor, x: torch.Tensor, layers: int) -> torch.Tensor:
    """LightGCN's layer mean: (x + Âx + ... + Âᴸx) / (L + 1)."""
    total = x
    for _ in range(layers):
        x = SymmetricPropagate.apply(adj, x)
        total = total + x
    return total / (layers + 1)


def cooccurrence_topk(train: sp.csr_matrix, k: int, chunk: int = 2048) -> sp.csr_matrix:
    """DRAGON's user–user graph: each user's ``k`` users with the most items in common (no
    self-loops), weighted by a softmax over those counts, so a row sums to 1 (0 for a user who
    shares nothing). Row chunks of RRᵀ keep memory to ``chunk`` rows at a time."""
    r = (train > 0).astype(np.float32).tocsr()
    n = r.shape[0]
    rows, cols, vals = [], [], []
    for s in range(0, n, chunk):
        c = (r[s : s + chunk] @ r.T).toarray()
        c[np.arange(c.shape[0]), np.arange(s, s + c.shape[0])] = 0
        kk = min(k, n - 1)
        if kk <= 0:
            break
        top = np.argpartition(-c, kk - 1, axis=1)[:, :kk]
        cnt = np.take_along_axis(c, top, 1)
        w = np.exp(cnt - cnt.max(1, keepdims=True)) * (cnt > 0)
        w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
        keep = w > 0
        rows.append(np.repeat(np.arange(s, s + c.shape[0]), kk)[keep.ravel()])
        cols.append(top.ravel()[keep.ravel()])
        vals.append(w.ravel()[keep.ravel()])
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, n),
    )
