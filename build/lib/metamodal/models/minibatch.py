"""Mini-batched LightGCN propagation: embeddings for a batch's nodes only, from their L-hop
neighbourhood, so a step's memory follows the neighbourhood and not the graph.

LightGCN's output is (Σ_{l≤L} Âˡ X) / (L + 1). For a node set N₀ it is computed in Horner form
over the hop sets N₀ ⊆ N₁ ⊆ … ⊆ N_L (N_{j+1} = N_j ∪ neighbours(N_j)):

    T_L = X[N_L],   T_j = X[N_j] + Â[N_j, N_{j+1}] · T_{j+1},   output = T_0 / (L + 1)

which is exact: with ``fanout=None`` it equals full propagation at N₀ (a test checks it). With a
fanout, each row keeps at most ``fanout`` sampled neighbours, reweighted by deg/fanout so the
row sum is unbiased (GraphSAGE-style neighbour sampling) — the path past one machine's memory,
where the sampled batches are also what one shards across Ray Train workers.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from metamodal.models.graphs import bipartite, sym_normalise


def normalised_adjacency_scipy(train: sp.csr_matrix) -> sp.csr_matrix:
    return sym_normalise(bipartite(train)).tocsr()


def _sample_rows(
    a: sp.csr_matrix, fanout: int | None, rng: np.random.Generator | None
) -> sp.csr_matrix:
    if fanout is None:
        return a
    indptr, indices, data = [0], [], []
    for r in range(a.shape[0]):
        lo, hi = a.indptr[r], a.indptr[r + 1]
        deg = hi - lo
        if deg > fanout:
            pick = lo + rng.choice(deg, fanout, replace=False)
            indices.append(a.indices[pick])
            data.append(a.data[pick] * (deg / fanout))
        else:
            indices.append(a.indices[lo:hi])
            data.append(a.data[lo:hi])
        indptr.append(indptr[-1] + min(deg, fanout))
    return sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.array(indptr)), shape=a.shape
    )


def _to_torch(a: sp.csr_matrix) -> torch.Tensor:
    coo = a.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    vals = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(idx, vals, a.shape, check_invariants=False)


def batch_propagate(
    adj: sp.csr_matrix,
    table: torch.Tensor,
    nodes: np.ndarray,
    layers: int,
    fanout: int | None = None,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """LightGCN outputs [len(nodes), d] for ``nodes`` (indices into ``table``, the stacked
    user+item embeddings), differentiable w.r.t. the rows of ``table`` it touched."""
    if fanout is not None and rng is None:
        rng = np.random.default_rng(0)
    hops = [np.unique(nodes)]
    blocks = []
    for _ in range(layers):
        rows = _sample_rows(adj[hops[-1]], fanout, rng)
        nxt = np.union1d(hops[-1], rows.indices)
        # columns of the block follow nxt's order
        col = np.searchsorted(nxt, rows.indices)
        blocks.append(sp.csr_matrix((rows.data, col, rows.indptr), shape=(len(hops[-1]), len(nxt))))
        hops.append(nxt)
    dev = table.device

    def rows(ix: np.ndarray) -> torch.Tensor:
        return table[torch.from_numpy(ix).to(dev)]

    t = rows(hops[-1])
    for j in range(layers - 1, -1, -1):
        t = rows(hops[j]) + torch.sparse.mm(_to_torch(blocks[j]).to(dev), t)
    out = t / (layers + 1)
    return out[torch.from_numpy(np.searchsorted(hops[0], nodes)).to(dev)]
