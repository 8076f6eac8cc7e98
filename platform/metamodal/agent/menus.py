"""Route menus per bucket and the routers that choose from them without an LLM.

A bucket is (pool kind, availability pattern). Its menu is the ``k`` candidate routes with the
best mean reward on training episodes, plus that bucket's RuleRouter-Fuse route (so a router
can always fall back to the rule). The non-LLM routers here are the controls MMA must beat:

- ``best_fixed``: one route per bucket (the menu's best mean on the selection episodes);
- ``LearnedGate``: a cost-sensitive multinomial logistic regression per bucket over the
  episode statistics, maximising the expected reward Σ_a π(a|x)·R[x,a] (the full-information
  bandit objective), its L2 strength chosen on the selection episodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from metamodal.agent.routes import Route

Bucket = tuple[str, tuple[str, ...]]  # (pool kind, pattern)


@dataclass
class Menu:
    routes: list[Route]
    rr: int  # index of RuleRouter-Fuse's route for this bucket


def build_menu(candidates: list[Route], rewards: np.ndarray, rr: Route, k: int) -> Menu:
    """RuleRouter's route first, then the ``k`` best candidates by mean training reward (the
    rule's route once). The rule's route is letter A in every bucket: one default the LLM
    learns across buckets, which few rows per bucket can teach; a per-bucket letter they
    cannot."""
    order = np.argsort(-rewards.mean(0), kind="stable")[:k]
    return Menu([rr, *(candidates[i] for i in order if candidates[i] != rr)], 0)


def soft_targets(rewards: np.ndarray, tau: float, shrink: float) -> np.ndarray:
    """q(a|x) ∝ exp(R̄[x,a]/τ), R̄ shrunk toward the bucket's mean reward of each route: one
    episode's single-target NDCG is mostly noise, the bucket mean is not."""
    n = len(rewards)
    w = n / (n + shrink)
    r = shrink_rewards(rewards, w)
    x = (r - r.max(1, keepdims=True)) / tau
    q = np.exp(x)
    return q / q.sum(1, keepdims=True)


def group_floor(q: np.ndarray, groups: list[str]) -> float:
    """Cross-entropy to ``q`` of each row's group mean target: the lowest warm-start loss a
    router that tells rows apart only by ``groups`` (the bucket-only prompt) can reach. A
    statistics router's loss above it has learnt nothing per episode."""
    keys = np.unique(np.asarray(groups), return_inverse=True)[1]
    means = np.zeros((keys.max() + 1, q.shape[1]))
    np.add.at(means, keys, q)
    means /= np.bincount(keys)[:, None]
    return float(-(q * np.log(np.clip(means[keys], 1e-12, None))).sum(1).mean())


def shrink_rewards(rewards: np.ndarray, w: float) -> np.ndarray:
    return w * rewards + (1 - w) * rewards.mean(0, keepdims=True)


def expected_reward_loss(logits, rewards, q_ref=None, beta: float = 0.0):
    """−E_π[R] with π = softmax(logits) over the menu, + β·KL(π ‖ q_ref). Every route's reward
    is known, so this is the exact objective (GRPO's policy gradient with the group equal to
    the whole menu has the same gradient), and its *value* is the expected reward: a line
    search (the gate's L-BFGS) needs that. A baseline-subtracted surrogate is identically 0
    in value and would stop any line search at the start."""
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    loss = -(p * rewards).sum(-1).mean()
    if q_ref is not None and beta > 0:
        loss = loss + beta * (p * (logp - torch.log(q_ref + 1e-9))).sum(-1).mean()
    return loss


@dataclass
class LearnedGate:
    """One linear softmax per bucket over standardised statistics."""

    l2: float = 1e-2
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    heads: dict[Bucket, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def fit(self, x: dict[Bucket, np.ndarray], r: dict[Bucket, np.ndarray]) -> LearnedGate:
        allx = np.concatenate(list(x.values()))
        self.mean, self.std = allx.mean(0), allx.std(0) + 1e-6
        for key in x:
            self.heads[key] = self._fit_one(self._std(x[key]), r[key])
        return self

    def _std(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def _fit_one(self, x: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch.manual_seed(0)
        xt, rt = torch.tensor(x, dtype=torch.float64), torch.tensor(r, dtype=torch.float64)
        w = torch.zeros(x.shape[1], r.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(r.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = expected_reward_loss(xt @ w + b, rt) + self.l2 * (w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return w.detach().numpy(), b.detach().numpy()

    def probs(self, key: Bucket, x: np.ndarray) -> np.ndarray:
        w, b = self.heads[key]
        logits = self._std(x) @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    def choose(self, key: Bucket, x: np.ndarray) -> np.ndarray:
        return self.probs(key, x).argmax(1)


def fit_gate(
    fit_x: dict, fit_r: dict, sel_x: dict, sel_r: dict, grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
) -> tuple[LearnedGate, dict]:
    """The L2 strength with the best mean selection reward over all buckets."""
    scores = {}
    best, best_s = None, -np.inf
    for l2 in grid:
        g = LearnedGate(l2).fit(fit_x, fit_r)
        picked = [sel_r[k][np.arange(len(sel_r[k])), g.choose(k, sel_x[k])] for k in sel_r]
        s = float(np.mean(np.concatenate(picked)))
        scores[l2] = s
        if s > best_s + 1e-12:
            best, best_s = g, s
    return best, scores


def crossfit_probs(gate: LearnedGate, x: dict, r: dict, seed: int, folds: int = 2) -> dict:
    """Per row of ``x``, the gate's π(route | statistics) from a gate (same L2) fitted on the
    *other* folds: in-sample probabilities of a model fitted on those very rows are
    over-confident, and a warm start that imitates them learns the overfit too."""
    out = {k: np.zeros_like(v) for k, v in r.items()}
    fold = {k: np.random.default_rng([seed, 17]).permutation(len(v)) % folds for k, v in x.items()}
    for f in range(folds):
        g = LearnedGate(gate.l2).fit({k: v[fold[k] != f] for k, v in x.items()},
                                     {k: v[fold[k] != f] for k, v in r.items()})  # fmt: skip
        for k, v in x.items():
            out[k][fold[k] == f] = g.probs(k, v[fold[k] == f])
    return out


def gate_warm_targets(gate: LearnedGate, fit: tuple[dict, dict], sel: tuple[dict, dict],
                      rule: dict, seed: int) -> tuple[dict, dict]:  # fmt: skip
    """The LLM router's warm-start targets per bucket (``fit``/``sel``: (x, rewards) dicts,
    ``rule``: RuleRouter-Fuse's menu index): the gate's cross-fitted probabilities where the
    gate beats the rule on the selection episodes, else the rule's route — and which it was."""
    probs = crossfit_probs(gate, *fit, seed)
    (sx, sr), targets, source = sel, {}, {}
    for k, r in fit[1].items():
        gate_sel = sr[k][np.arange(len(sr[k])), gate.choose(k, sx[k])].mean()
        if gate_sel > sr[k][:, rule[k]].mean():
            targets[k], source[k] = probs[k], "gate"
        else:
            targets[k], source[k] = np.eye(r.shape[1])[np.full(len(r), rule[k])], "rule"
    return targets, source


WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)


def fit_rule_route(batch, tools: list[str], lambdas=(0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0),
                   rounds: int = 2) -> Route:  # fmt: skip
    """RuleRouter-Fuse for one bucket: coordinate ascent over per-tool weights and λ on mean
    NDCG@10 (``reward_table`` evaluates each candidate on the whole batch at once). Some tool
    keeps a positive weight: all zeros would abstain (leave the pool's own order where the
    first stage is masked), which exploits pool construction, not evidence; the first stage
    alone stays reachable as λ = 1."""
    from metamodal.agent.routes import reward_table

    w, lam = dict.fromkeys(tools, 1.0), 0.5

    def score(w: dict, lam: float) -> float:
        return float(reward_table(batch, [Route.of(w, lam)]).mean())

    best = score(w, lam)
    for _ in range(rounds):
        for t in tools:
            for x in WEIGHT_GRID:
                if not any(v > 0 for v in {**w, t: x}.values()):
                    continue
                s = score({**w, t: x}, lam)
                if s > best + 1e-9:
                    w, best = {**w, t: x}, s
        for x in lambdas:
            s = score(w, x)
            if s > best + 1e-9:
                lam, best = x, s
    return Route.of(w, lam)
