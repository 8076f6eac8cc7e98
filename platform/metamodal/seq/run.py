"""``metamodal seq run``: every sequential method on one dataset, both protocols, under each
missing-modality condition, per seed; then ``report.json``/``report.md``/PNGs (``seq.report``).

Each method's results are written atomically per seed (``seedN/<method>/result.json`` and its
per-user metrics) with a key of what made them; the same command again keeps what is finished
and runs the rest — adding ``keyword_llm`` later keeps the baselines.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from metamodal.data import Dataset, load_dataset
from metamodal.data.splits import make_split
from metamodal.eval.sequential import full_metrics, sample_negatives, sampled_metrics
from metamodal.rundir import write_json
from metamodal.seq.config import KEYWORD_READERS, SeqConfig
from metamodal.seq.sequences import Sequences, padded

HISTORY_BUCKETS = ((1, 5), (6, 20), (21, 50), (51, 10**9))
CHUNK = 512


def bucket_name(lo: int, hi: int) -> str:
    return f"{lo}+" if hi >= 10**9 else f"{lo}-{hi}"


def content_of(ds: Dataset, cfg: SeqConfig) -> tuple[dict, dict, dict[str, str]]:
    """(features, presence, kind) per content modality, normalised as the zoo sees them."""
    from metamodal.train.data import content_modalities, normalise_features

    names = content_modalities(ds, cfg.modalities)
    mods = {n: ds.modalities[n] for n in names}
    feats = {n: normalise_features(m.features, m.present, cfg.normalise) for n, m in mods.items()}
    return feats, {n: m.present.copy() for n, m in mods.items()}, {n: m.kind for n, m in mods.items()}


def conditions(kinds: dict[str, str]) -> dict[str, list[str]]:
    """``full`` (the catalogue's own gaps only) and one condition per content kind that drops
    every modality of that kind for every item: what a model reads when text (or the image) is
    missing across the board."""
    out = {"full": []}
    for kind in sorted(set(kinds.values())):
        out[f"no_{kind}"] = [n for n, k in kinds.items() if k == kind]
    return out


class Scorer:
    """One method's scores for padded histories under a condition (modalities hidden)."""

    def __init__(self, name: str, model=None, popularity: np.ndarray | None = None) -> None:
        self.name, self.model, self.popularity = name, model, popularity

    def __call__(self, x: np.ndarray, hidden: list[str]) -> np.ndarray:
        if self.model is None:
            return np.broadcast_to(self.popularity, (len(x), len(self.popularity)))
        n = self.model.n_items + 1
        mask = {m: torch.ones(n, dtype=torch.bool) for m in hidden if m in self.model.modalities}
        return self.model.scores(torch.from_numpy(x), mask or None).numpy()


def evaluate(scorer: Scorer, seqs: Sequences, users: np.ndarray, negatives: np.ndarray, hidden: list[str],
             max_len: int) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """Per-user metrics on the test targets, both protocols."""
    hist = [seqs.history("test", int(u)) for u in users]
    target = seqs.target["test"][users]
    out: dict[str, dict[str, list]] = {"sampled": {}, "full": {}}
    for s in range(0, len(users), CHUNK):
        sl = slice(s, s + CHUNK)
        sc = scorer(padded(hist[sl], max_len), hidden)
        rows = np.arange(len(sc))
        got = {"sampled": sampled_metrics(sc[rows, target[sl]], np.take_along_axis(sc, negatives[sl], 1)),
               "full": full_metrics(sc, target[sl], hist[sl])}  # fmt: skip
        for proto, ms in got.items():
            for k, v in ms.items():
                out[proto].setdefault(k, []).append(v)
    return {p: {k: np.concatenate(v) for k, v in ms.items()} for p, ms in out.items()}


PAIRED = (("sampled", "hr@5"), ("sampled", "ndcg@10"), ("full", "ndcg@10"))  # kept per user


def save_per_user(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Per-user metrics (key ``method|condition|protocol|metric``) for the paired tests."""
    from metamodal.rundir.base import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def summarise(per_user: dict[str, dict[str, np.ndarray]], lengths: np.ndarray) -> dict:
    """Means over the users a method read (NaN: not read), overall and per history-length
    bucket."""
    res = {p: {k: float(np.nanmean(v)) for k, v in ms.items()} for p, ms in per_user.items()}
    res["users"] = int(np.isfinite(per_user["full"]["ndcg@10"]).sum())
    res["by_history"] = {}
    for lo, hi in HISTORY_BUCKETS:
        sel = (lengths >= lo) & (lengths <= hi) & np.isfinite(per_user["full"]["ndcg@10"])
        if sel.any():
            res["by_history"][bucket_name(lo, hi)] = {
                "users": int(sel.sum()), "sampled_hr@5": float(per_user["sampled"]["hr@5"][sel].mean()),
                "full_ndcg@10": float(per_user["full"]["ndcg@10"][sel].mean())}  # fmt: skip
    return res


def _job(seqs: Sequences, cfg: SeqConfig, seed: int, content: dict, present: dict):
    from metamodal.seq.train import SeqJob

    users = seqs.users("valid")
    hist = [seqs.history("valid", int(u)) for u in users]
    valid = (padded(hist, cfg.sasrec.max_len), seqs.target["valid"][users], hist)
    return SeqJob(cfg.sasrec, cfg.train, seed, seqs.n_items, seqs.windows(cfg.sasrec.max_len),
                  content, present, valid)  # fmt: skip


@dataclass
class SeedRun:
    """What every method of one seed shares: the data, the test users and their negatives,
    the conditions, and the methods fitted so far (the keyword readers read SASRec's)."""

    ds: Dataset
    seqs: Sequences
    cfg: SeqConfig
    seed: int
    out: Path
    content: tuple[dict, dict, dict[str, str]]
    users: np.ndarray
    negatives: np.ndarray
    fitted: dict = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.out / f"seed{self.seed}"


def _sasrec_model(run: SeedRun, method: str):
    """The SASRec-family model of ``method`` this seed trained, loaded back from its weights
    when the method's results were kept from an earlier run."""
    if method in run.fitted:
        return run.fitted[method].model
    from metamodal.seq.train import build

    f = run.dir / method / "model.pt"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: the keyword readers need {method} of this seed (add it to methods)")
    content, present, _ = run.content
    mm = method == "mm_sasrec"
    model = build(_job(run.seqs, run.cfg, run.seed, content if mm else {}, present if mm else {}))
    model.load_state_dict(torch.load(f, weights_only=True))
    return model.eval()


def fit_method(method: str, run: SeedRun) -> tuple[Scorer, dict]:
    seqs, cfg = run.seqs, run.cfg
    if method == "popularity":
        counts = np.bincount(np.concatenate(seqs.train), minlength=seqs.n_items).astype(np.float64)
        return Scorer(method, popularity=counts), {}
    from metamodal.rundir.base import atomic_write
    from metamodal.seq.train import fit_sequential

    content, present, _ = run.content
    mm = method == "mm_sasrec"
    job = _job(seqs, cfg, run.seed, content if mm else {}, present if mm else {})
    model, state = fit_sequential(job, run.dir / method, f"seq-{method}-seed{run.seed}")
    atomic_write(run.dir / method / "model.pt", lambda tmp: torch.save(model.state_dict(), tmp))
    return Scorer(method, model), state


def method_key(cfg: SeqConfig, method: str, ds: Dataset, seed: int) -> str:
    """What a method's results depend on: the data, the seed, the shared settings, the
    keywords for the keyword readers and the LLM's own for keyword_llm (so adding or retuning
    it later keeps the other methods)."""
    skip = {"seeds", "methods"} | ({"llm"} if method != "keyword_llm" else set())
    skip |= {"keywords"} if method not in KEYWORD_READERS else set()
    text = cfg.model_dump_json(exclude=skip) + method + str(seed) + ds.fingerprint()
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def evaluate_method(method: str, run: SeedRun) -> tuple[dict, dict[str, np.ndarray], dict]:
    """(summary per condition, per-user arrays, training facts)."""
    conds = conditions(run.content[2])
    lengths = np.array([len(run.seqs.history("test", int(u))) for u in run.users])
    if method in KEYWORD_READERS:
        from metamodal.seq.llm_run import evaluate_keyword_llm, evaluate_keyword_overlap

        read = evaluate_keyword_llm if method == "keyword_llm" else evaluate_keyword_overlap
        got, facts = read(run, _sasrec_model(run, "sasrec"))
    else:
        scorer, state = fit_method(method, run)
        run.fitted[method] = scorer
        got = {c: evaluate(scorer, run.seqs, run.users, run.negatives, hidden, run.cfg.sasrec.max_len)
               for c, hidden in conds.items()}  # fmt: skip
        facts = {"best_epoch": state.get("best_epoch")}
    arrays = {f"{c}|{p}|{k}": got[c][p][k] for c in conds for p, k in PAIRED}
    return {c: summarise(got[c], lengths) for c in conds}, arrays, facts


def run_method(method: str, run: SeedRun) -> tuple[dict, dict[str, np.ndarray]]:
    """One method of one seed, or its kept results when they were made the same way."""
    d = run.dir / method
    key = method_key(run.cfg, method, run.ds, run.seed)
    f, pu = d / "result.json", d / "per_user.npz"
    if f.is_file() and pu.is_file() and (done := json.loads(f.read_text())).get("key") == key:
        print(f"seed {run.seed}: {method}: kept (finished with this configuration)", flush=True)
        return done, dict(np.load(pu))
    begun = d / "key"  # what an interrupted training there was made with: only that one resumes
    if d.exists() and not (begun.is_file() and begun.read_text() == key):
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    begun.write_text(key)
    t0 = time.perf_counter()
    print(f"seed {run.seed}: {method}", flush=True)
    per_cond, arrays, facts = evaluate_method(method, run)
    res = {"key": key, "conditions": per_cond, "seconds": time.perf_counter() - t0, **facts}
    save_per_user(pu, arrays)
    write_json(f, res, indent=1)  # last: a method with result.json is whole
    full = per_cond["full"]
    print(f"seed {run.seed}: {method}: sampled HR@5 {full['sampled']['hr@5']:.4f}, full NDCG@10 "
          f"{full['full']['ndcg@10']:.4f} ({res['seconds']:.0f} s)", flush=True)  # fmt: skip
    return res, arrays


def run_seed(ds: Dataset, seqs: Sequences, cfg: SeqConfig, seed: int, out: Path,
             content: tuple[dict, dict, dict[str, str]]) -> tuple[dict, dict]:  # fmt: skip
    """(the seed's results per method, its per-user arrays keyed ``method|condition|…``)."""
    users = seqs.users("test")
    run = SeedRun(ds, seqs, cfg, seed, out, content, users,
                  sample_negatives(seqs.n_items, seqs.seen, users, cfg.n_negatives, seed))  # fmt: skip
    res: dict = {"seed": seed, "test_users": len(users), "methods": {}, "conditions": conditions(content[2])}
    arrays: dict[str, np.ndarray] = {}
    for method in cfg.method_list():
        res["methods"][method], got = run_method(method, run)
        arrays.update({f"{method}|{k}": v for k, v in got.items()})
    return res, arrays


def run_seq(dataset: str, out: str | Path, cfg: SeqConfig) -> dict:
    """Every seed (finished ones kept), then the report."""
    from metamodal.seq.report import write_report
    from metamodal.train.data import attach_features

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds = attach_features(load_dataset(dataset), cfg.features)
    seqs = Sequences.from_split(ds, make_split(ds, "loo"))
    content = content_of(ds, cfg) if cfg.features or ds.feature_modalities() else ({}, {}, {})
    if "mm_sasrec" in cfg.method_list() and not content[0]:  # said before any training, not after
        raise ValueError("mm_sasrec needs content modalities: give features=DIR (an extraction run) or a catalogue with feature files")  # fmt: skip
    write_json(out / "config.json", {"dataset": str(dataset), **cfg.model_dump()}, indent=1)
    got = [run_seed(ds, seqs, cfg, s, out, content) for s in range(cfg.seeds)]
    return write_report(out, str(dataset), cfg, [g[0] for g in got], [g[1] for g in got], time.perf_counter() - t0)
