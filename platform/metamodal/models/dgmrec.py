"""DGMRec (Kim et al., SIGIR 2025, "Disentangling and Generating Modalities for Recommendation
in Missing Modality Scenarios"): each modality split into a general and a specific part, and an
item's absent modality generated from what it has.

- Per modality m: general ``g_m = σ(shared(tanh(enc_m(x_m))))`` (one shared layer across the
  modalities) and specific ``s_m = σ(spec_m(x_m))``; both are gated by the item's preference
  filter (the mean over its training users of ``tanh(pref_m(user))``), propagated over the
  modality's kNN item graph, and averaged into users over their training items.
- Generation: an absent row of modality m is decoded from a generated general part (from the
  mean of the item's other modalities' general parts) and a generated specific part (from its
  preference filter). Absent rows start as the modality's mean; they are generated from the
  current weights, never from the row itself, so a masked modality cannot leak.
- Disentangling: InfoNCE between consecutive modalities' general parts (items that have both;
  users) and a CLUB upper bound on the mutual information of each modality's general and
  specific parts.
- Scores: ``u = u_cf + (mean_m g_m + Σ_m s_m) / (M + 1)`` (LightGCN over the IDs for ``u_cf``),
  the same for items; one dot product, so any ANN index serves the model.
- Loss: BPR + generation MSEs + reconstruction (decoders on detached parts) + InfoNCE
  alignments (user–item per view; behaviour–modality) + CLUB + norms.

What differs from the authors' code, and why: any number of modalities (the cross-modal
generator reads the mean of the item's other present modalities, not the one other); the CLUB
estimators learn inside the training loss (their fit term sees detached inputs, the bound
their detached weights) instead of with a second optimiser between epochs, so a checkpoint
holds all of the state and a resumed run equals an uninterrupted one (the logged loss includes
their fit term, a log-likelihood that goes below zero); absent rows are generated from each
epoch's weights but never written into trainable feature tables (the raw features stay frozen,
so a model rebuilt with a modality masked generates that modality instead of remembering it);
absent items' kNN rows are recomputed from the generated features each epoch from
``refresh_from`` on (blended with the self-loop they start with), rather than every fifth epoch
cumulatively. Defaults follow the authors' ``DGMRec.yaml``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from metamodal.models.content import ContentFeatures, require_content
from metamodal.models.graphs import (
    SparseOp,
    knn_graph,
    normalised_adjacency,
    propagate,
    row_mean,
    sym_normalise,
)
from metamodal.models.zoo_base import ModelData, Params, ZooModel, bpr_loss, info_nce


class DGMRecParams(Params):
    embedding_dim: int = 64
    n_ui_layers: int = 2  # LightGCN hops over the ID embeddings
    n_mm_layers: int = 1  # hops over each modality's item graph
    knn_k: int = 10
    inter_weight: float = 0.01  # InfoNCE between modalities' general parts
    inter_temp: float = 0.4
    mi_weight: float = 0.001  # CLUB bound on MI(general, specific)
    club_hidden: int = 64
    club_fit_weight: float = 0.01  # the estimators' own fit term (Adam: its scale only keeps the logged loss readable)
    intra_weight: float = 0.01  # user–item InfoNCE per view
    intra_temp: float = 0.1
    align_weight: float = 0.01  # behaviour (ID) ↔ modality InfoNCE
    align_temp: float = 0.2
    recon_weight: float = 0.1
    reg_weight: float = 0.1  # on the batch's modality embeddings (norms / batch)
    id_reg_weight: float = 1e-5
    noise: float = 0.1  # the generators' input perturbation in training
    refresh_from: int = 5  # epoch from which absent items' graph rows follow generated features
    refresh_blend: float = 0.8  # their weight against the self-loop


def _linear(d_in: int, d_out: int, bias: bool = True) -> torch.nn.Linear:
    layer = torch.nn.Linear(d_in, d_out, bias=bias)
    torch.nn.init.xavier_uniform_(layer.weight)
    return layer


def _generator(d: int) -> torch.nn.Module:
    return torch.nn.Sequential(_linear(d, d), torch.nn.Tanh(), _linear(d, d))


def _nearest(x: torch.Tensor, rows: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """Each of ``rows``' k nearest other rows of ``x`` (unit rows: cosine), in row chunks."""
    out = []
    for s in range(0, len(rows), chunk):
        q = torch.from_numpy(rows[s : s + chunk]).to(x.device)
        sims = x[q] @ x.T
        sims[torch.arange(len(q), device=x.device), q] = -float("inf")
        out.append(sims.topk(k, dim=1).indices.cpu().numpy())
    return np.concatenate(out)


def _masked_mse(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the ``rows`` marked (zero, still in the graph, when none is)."""
    per_row = (a - b).pow(2).mean(1)
    return (per_row * rows).sum() / rows.sum().clamp(min=1)


class CLUB(torch.nn.Module):
    """Cheng et al.'s CLUB (sampled): a Gaussian q(y | x) whose log-likelihood gap between paired
    and shuffled y bounds I(x; y) from above."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        h = max(1, hidden // 2)
        self.mu = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, d))
        self.logvar = torch.nn.Sequential(
            torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, d), torch.nn.Tanh()
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu(x), self.logvar(x)

    def _frozen(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The moments through detached weights: gradients reach ``x`` only."""
        return torch.func.functional_call(self, {n: p.detach() for n, p in self.named_parameters()}, (x,))

    def fit_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """−log q(y | x): trains the estimator only (the parts are detached)."""
        mu, logvar = self(x.detach())
        return ((mu - y.detach()) ** 2 / logvar.exp() + logvar).sum(1).mean()

    def bound(self, x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """The MI upper bound: trains the encoders only (the estimator's weights are detached)."""
        mu, logvar = self._frozen(x)
        pos = -((mu - y) ** 2) / logvar.exp()
        neg = -((mu - y[perm]) ** 2) / logvar.exp()
        return (pos.sum(1) - neg.sum(1)).mean() / 2


class DGMRec(ZooModel):
    name = "dgmrec"
    Params = DGMRecParams

    def __init__(self, data: ModelData, params: DGMRecParams) -> None:
        super().__init__(data, params)
        require_content(data, self.name)
        d = params.embedding_dim
        self.content = ContentFeatures(data)
        self.init_id_embeddings(d)
        dims = self.content.dims()
        self.enc_g = torch.nn.ModuleList(_linear(dm, d) for dm in dims)
        self.shared = _linear(d, d)
        self.enc_s = torch.nn.ModuleList(_linear(dm, d) for dm in dims)
        self.pref = torch.nn.ModuleList(_linear(d, d, bias=False) for _ in dims)
        self.dec = torch.nn.ModuleList(_linear(2 * d, dm) for dm in dims)
        self.gen_g = torch.nn.ModuleList(_generator(d) for _ in dims if len(dims) > 1)  # cross-modal
        self.gen_s = torch.nn.ModuleList(_generator(d) for _ in dims)
        self.club = torch.nn.ModuleList(CLUB(d, params.club_hidden) for _ in dims)
        r = (data.train > 0).astype(np.float32).tocsr()
        self.user_mean, self.item_mean = SparseOp(row_mean(r)), SparseOp(row_mean(r.T.tocsr()))
        self.adj = normalised_adjacency(data.train)
        self.base_graphs = [self._base_graph(x, present) for x, present in data.features.values()]
        self.graphs = [SparseOp(g) for g in self.base_graphs]
        self.register_buffer("refresh_on", torch.zeros((), dtype=torch.bool))
        self._generated_now: list[torch.Tensor] | None = None
        for k, (x, present) in enumerate(data.features.values()):
            mean = x[present].mean(0) if present.any() else np.zeros(x.shape[1], np.float32)
            self.register_buffer(
                f"mean{k}", torch.from_numpy(np.asarray(mean, np.float32)), persistent=False
            )

    def _base_graph(self, x: np.ndarray, present: np.ndarray) -> sp.csr_matrix:
        """kNN among the items that have the modality (normalised); an absent item keeps only a
        self-loop until its generated features place it."""
        g = sym_normalise(knn_graph(x, present, self.p.knn_k))
        return (g + sp.diags((~present).astype(np.float32))).tocsr()

    def set_epoch(self, epoch: int) -> None:
        """Generation and the graph refresh follow the weights once per epoch (the authors'
        schedule); whether the refresh is on is saved with the weights, so a model loaded from
        a checkpoint regenerates exactly as ``set_epoch`` at the kept epoch would."""
        super().set_epoch(epoch)
        self.refresh_on.fill_(epoch >= self.p.refresh_from and self.p.refresh_blend > 0)
        self._generated_now = None

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state, strict=strict, assign=assign)
        self._generated_now = None  # what the loaded weights generate, on first use
        return out

    def _filled(self) -> list[torch.Tensor]:
        """The features this epoch's weights fill in (and the graphs they refresh)."""
        now = self._generated_now
        if now is None or now[0].device != self.item.weight.device:
            self.graphs = [SparseOp(g) for g in self.base_graphs]
            now = self._generate()
            if bool(self.refresh_on):
                self._refresh_graphs(now)
            self._generated_now = now
        return now

    @torch.no_grad()
    def _refresh_graphs(self, filled: list[torch.Tensor]) -> None:
        """Absent items' rows: ``refresh_blend`` over their k nearest items by the features
        generated now (present items by their own), the rest on the self-loop."""
        kk, blend = min(self.p.knn_k, self.n_items - 1), self.p.refresh_blend
        for k in range(len(self.content)):
            off = ~self.content.present(k).cpu().numpy()
            absent = np.flatnonzero(off)
            if len(absent) == 0 or kk <= 0:
                continue
            nb = _nearest(F.normalize(filled[k].float(), dim=1), absent, kk)
            rows = sp.csr_matrix((np.full(nb.size, blend / kk, np.float32), (np.repeat(absent, kk), nb.ravel())),
                                 shape=self.base_graphs[k].shape)  # fmt: skip
            present_rows = sp.diags((~off).astype(np.float32)) @ self.base_graphs[k]
            self.graphs[k] = SparseOp((present_rows + sp.diags(off * (1 - blend)) + rows).tocsr())

    def _perturb(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p.noise == 0:
            return x
        return x + torch.sign(x) * F.normalize(torch.rand_like(x), dim=-1) * self.p.noise

    def _prop(self, k: int, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.p.n_mm_layers):
            x = self.graphs[k] @ x
        return x

    def _parts(self, xs: list[torch.Tensor]) -> tuple[list, list, list]:
        """(raw general parts, raw specific parts, preference filters), per modality."""
        g = [torch.sigmoid(self.shared(torch.tanh(self.enc_g[k](x)))) for k, x in enumerate(xs)]
        s = [torch.sigmoid(self.enc_s[k](x)) for k, x in enumerate(xs)]
        filt = [self.item_mean @ torch.tanh(self.pref[k](self.user.weight)) for k in range(len(xs))]
        return g, s, filt

    def _cross(self, views: list[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The mean of the other present modalities' parts per item, and which items have one."""
        others = [j for j in range(len(views)) if j != k]
        if not others:
            return None
        on = [self.content.present(j).to(views[0].dtype)[:, None] for j in others]
        total = sum(views[j] * m for j, m in zip(others, on, strict=True))
        count = sum(on)
        return total / count.clamp(min=1), count[:, 0] > 0

    def _generated(self, k: int, g_views: list[torch.Tensor], filt: list[torch.Tensor]):
        """(generated general part, generated specific part) of modality k for every item."""
        cross = self._cross(g_views, k)
        g_hat = self.gen_g[k](cross[0]) if cross else torch.zeros_like(g_views[k])
        s_hat = self._prop(k, filt[k] * self.gen_s[k](filt[k]))
        return g_hat, s_hat

    @torch.no_grad()
    def _generate(self) -> list[torch.Tensor]:
        """Each modality's features, absent rows decoded from what the item has (the mean row
        first, so the other parts can be computed at all)."""
        self._graphs_to(self.item.weight.device)
        present = [self.content.present(k) for k in range(len(self.content))]
        xs = [torch.where(present[k][:, None], self.content.features(k), getattr(self, f"mean{k}"))
              for k in range(len(self.content))]  # fmt: skip
        g, _, filt = self._parts(xs)
        g_views = [self._prop(k, filt[k] * g[k]) for k in range(len(xs))]
        out = []
        for k, x in enumerate(xs):
            absent = ~present[k]
            if absent.any():
                g_hat, s_hat = self._generated(k, g_views, filt)
                x = x.clone()
                x[absent] = self.dec[k](torch.cat([g_hat[absent], s_hat[absent]], 1))
            out.append(x)
        return out

    def _graphs_to(self, device: torch.device) -> None:
        if self.adj.device != device:
            self.adj = self.adj.to(device)

    def views(self) -> dict:
        """ID vectors and, per modality, the users' and items' general and specific views
        (plus the raw parts and filters the loss reads)."""
        xs = self._filled()
        g, s, filt = self._parts(xs)
        ids = propagate(
            self.adj, torch.cat([self.user.weight, self.item.weight]), self.p.n_ui_layers
        )
        out = {"u": ids[: self.n_users], "i": ids[self.n_users :], "g": g, "s": s, "filt": filt,
               "ig": [], "is": [], "ug": [], "us": []}  # fmt: skip
        for k in range(len(xs)):
            ig, is_ = self._prop(k, filt[k] * g[k]), self._prop(k, filt[k] * s[k])
            out["ig"].append(ig)
            out["is"].append(is_)
            out["ug"].append(self.user_mean @ ig)
            out["us"].append(self.user_mean @ is_)
        return out

    def _fused(self, v: dict) -> tuple[torch.Tensor, torch.Tensor]:
        m = len(v["ig"])
        u = v["u"] + (sum(v["ug"]) / m + sum(v["us"])) / (m + 1)
        i = v["i"] + (sum(v["ig"]) / m + sum(v["is"])) / (m + 1)
        return u, i

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._fused(self.views())

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        v = self.views()
        u, i = self._fused(v)
        loss = bpr_loss(u[users], i[pos], i[neg])
        items = torch.unique(torch.cat([pos, neg]))
        loss = (
            loss
            + self._generation_loss(v, items)
            + self.p.recon_weight * self._recon_loss(v, items)
        )
        loss = loss + self._disentangle_loss(v, users, items) + self._align_loss(v, users, pos)
        id_reg = (v["u"][users].norm() + v["i"][pos].norm() + v["i"][neg].norm()) / len(users)
        mm_reg = sum((v["ig"][k][pos] + v["is"][k][pos]).norm() for k in range(len(v["ig"]))) / len(
            users
        )
        return loss + self.p.id_reg_weight * id_reg + self.p.reg_weight * mm_reg

    def _generation_loss(self, v: dict, items: torch.Tensor) -> torch.Tensor:
        """Specific parts from the preference filter; general parts from the other modalities
        (each on the batch's items that have what it is compared with: masked, so every
        generator is in every step's graph, as DDP wants)."""
        loss = v["u"].new_zeros(())
        for k in range(len(v["g"])):
            on = self.content.present(k)[items]
            gen_s = self.gen_s[k](self._perturb(v["filt"][k][items]))
            loss = loss + _masked_mse(gen_s, v["s"][k][items], on)
            cross = self._cross([self._perturb(x) for x in v["ig"]], k)
            if cross is not None:
                gen_g = self.gen_g[k](cross[0][items])
                loss = loss + _masked_mse(gen_g, v["ig"][k][items], on & cross[1][items])
        return loss

    def _recon_loss(self, v: dict, items: torch.Tensor) -> torch.Tensor:
        """The decoders learn features from detached parts (what generation decodes)."""
        loss = v["u"].new_zeros(())
        for k in range(len(v["g"])):
            z = self._perturb(torch.cat([v["ig"][k][items], v["is"][k][items]], 1).detach())
            loss = loss + _masked_mse(self.dec[k](z), self.content.features(k)[items], self.content.present(k)[items])
        return loss

    def _disentangle_loss(self, v: dict, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p, loss = self.p, v["u"].new_zeros(())
        for k in range(len(v["g"]) - 1):
            both = items[self.content.present(k)[items] & self.content.present(k + 1)[items]]
            loss = loss + p.inter_weight * (info_nce(v["ig"][k][both], v["ig"][k + 1][both], p.inter_temp)
                                            + info_nce(v["ug"][k][users], v["ug"][k + 1][users], p.inter_temp))  # fmt: skip
        perm = torch.randperm(len(items), device=items.device)
        for k in range(len(v["g"])):
            g_k, s_k = v["ig"][k][items], v["is"][k][items]
            loss = (
                loss
                + p.mi_weight * self.club[k].bound(s_k, g_k, perm)
                + p.club_fit_weight * self.club[k].fit_loss(s_k, g_k)
            )
        return loss

    def _align_loss(self, v: dict, users: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        p = self.p
        ug, ig = sum(v["ug"]), sum(v["ig"])
        intra = info_nce(v["u"][users], v["i"][pos], p.intra_temp) + info_nce(
            ug[users], ig[pos], p.inter_temp
        )
        intra = intra + sum(
            info_nce(us[users], is_[pos], p.intra_temp)
            for us, is_ in zip(v["us"], v["is"], strict=True)
        )
        align = info_nce(v["i"][pos], ig[pos], p.align_temp) + info_nce(
            v["u"][users], ug[users], p.align_temp
        )
        return p.intra_weight * intra + p.align_weight * align
