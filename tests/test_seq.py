"""Sequential recommendation: the leave-last-out sequences, the two protocols against brute
force, and SASRec / multimodal SASRec on Ray Train learning a next-item rule (generated data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metamodal.data import Dataset, Interactions
from metamodal.data.splits import make_split
from metamodal.eval.sequential import full_metrics, sample_negatives, sampled_metrics
from metamodal.seq.sequences import Sequences, padded


def _shuffled_ds(rng: np.random.Generator) -> Dataset:
    rows = []
    for u in range(30):
        items = rng.choice(40, size=int(rng.integers(3, 12)), replace=False)
        rows += [(u, int(i), 1000 * u + 10 * j) for j, i in enumerate(items)]
    rows = [rows[i] for i in rng.permutation(len(rows))]  # file order says nothing of time
    u, i, t = (np.array(c) for c in zip(*rows, strict=True))
    return Dataset("s", "test", "mem", np.arange(30).astype(str), np.arange(40).astype(str),
                   Interactions(u, i, timestamp=t))  # fmt: skip


def test_sequences_are_in_time_order_and_hold_out_the_last_two() -> None:
    ds = _shuffled_ds(np.random.default_rng(0))
    seqs = Sequences.from_split(ds, make_split(ds, "loo"))
    inter = ds.interactions
    for u in range(ds.n_users):
        mine = np.flatnonzero(inter.user == u)
        by_time = inter.item[mine[np.argsort(inter.timestamp[mine])]]
        assert list(seqs.train[u]) == list(by_time[:-2])
        assert seqs.target["valid"][u] == by_time[-2] and seqs.target["test"][u] == by_time[-1]
        assert list(seqs.history("test", u)) == list(by_time[:-1])
        assert set(seqs.seen[u]) == set(by_time)
    x, y = seqs.windows(4)
    pairs = sorted((int(a), int(b)) for xr, yr in zip(x, y, strict=True) for a, b in zip(xr, yr, strict=True) if b)
    want = sorted((int(s[j]) + 1, int(s[j + 1]) + 1) for s in seqs.train for j in range(len(s) - 1))
    assert pairs == want  # every training transition, each once
    assert list(padded([np.array([5, 6, 7])], 5)[0]) == [0, 0, 6, 7, 8]
    with pytest.raises(ValueError, match="leave-last-out"):
        Sequences.from_split(ds, make_split(ds, "mmrec"))


def test_sampled_negatives_never_hit_the_history_or_the_target() -> None:
    ds = _shuffled_ds(np.random.default_rng(1))
    seqs = Sequences.from_split(ds, make_split(ds, "loo"))
    users = seqs.users("test")
    neg = sample_negatives(ds.n_items, seqs.seen, users, 20, seed=3)
    for r, u in enumerate(users):
        assert len(set(neg[r])) == 20 and not set(neg[r]) & set(seqs.seen[u])
        assert seqs.target["test"][u] not in neg[r]
    assert (neg == sample_negatives(ds.n_items, seqs.seen, users, 20, seed=3)).all()


def test_both_protocols_match_a_brute_force_ranking() -> None:
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(50, 30)).round(1)  # rounded: ties happen, and count against the target
    targets = rng.integers(0, 30, 50)
    masked = [np.setdiff1d(rng.choice(30, 5, replace=False), [t]) for t in targets]
    neg = np.stack([rng.choice(np.setdiff1d(np.arange(30), [t]), 20, replace=False) for t in targets])
    full = full_metrics(scores, targets, masked)
    samp = sampled_metrics(scores[np.arange(50), targets], np.take_along_axis(scores, neg, 1))
    for r in range(50):
        t = targets[r]
        rivals = [i for i in range(30) if i != t and i not in masked[r]]
        rank = sum(scores[r, i] >= scores[r, t] for i in rivals)
        assert full["recall@10"][r] == float(rank < 10)
        assert full["ndcg@20"][r] == pytest.approx((rank < 20) / np.log2(rank + 2))
        srank = sum(scores[r, i] >= scores[r, t] for i in neg[r])
        assert samp["hr@5"][r] == float(srank < 5)
        assert samp["ndcg@10"][r] == pytest.approx((srank < 10) / np.log2(srank + 2))


def write_cycle_catalog(out: Path, n_items: int = 60, n_users: int = 160, seed: int = 0) -> Path:
    """Users walk a cycle: the next item is always the current one + 1. Content: a random
    vector per item (text kind) and another (image kind), a fifth of the rows absent."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    ids = [f"I{i:03d}" for i in range(n_items)]
    texts = [f"item {i}" if k % 20 else None for k, i in enumerate(ids)]  # every 20th has no text
    pd.DataFrame({"id": ids, "text": texts}).to_json(out / "items.jsonl", orient="records", lines=True)
    rows = []
    for u in range(n_users):
        start, n = int(rng.integers(n_items)), int(rng.integers(8, 16))
        rows += [(f"U{u:03d}", ids[(start + j) % n_items], 100 * j) for j in range(n)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(out / "interactions.csv", index=False)
    for name in ("txt", "img"):
        x = rng.normal(size=(n_items, 16)).astype(np.float32)
        x[rng.random(n_items) < 0.2] = 0.0  # absent rows
        np.save(out / f"{name}.npy", x)
    (out / "catalog.json").write_text(json.dumps({"image_field": None, "features": {
        "txt": {"path": "txt.npy", "kind": "text"}, "img": {"path": "img.npy", "kind": "image"}}}))
    return out


def test_keyword_prompts_never_show_a_hidden_modality() -> None:
    """Under no_text (no_image) no text (visual) keyword reaches any part of the prompt:
    the history, the neighbours' keywords or a candidate line."""
    from metamodal.seq.llm_rec import ItemKeywords, Neighbours, PromptMaker, hidden_kinds

    ds = _shuffled_ds(np.random.default_rng(4))
    seqs = Sequences.from_split(ds, make_split(ds, "loo"))
    kw = ItemKeywords([[f"tx{i}", f"tw{i}"] for i in range(40)], [[f"vx{i}"] if i % 3 else [] for i in range(40)])
    make = PromptMaker(seqs, kw, Neighbours(np.random.default_rng(0).normal(size=(30, 8)), k=5))
    for u in seqs.users("test"):
        hist, cands = seqs.history("test", int(u)), np.arange(21)
        full = make(int(u), hist, cands, hidden_kinds("full"))
        no_text, no_image = (make(int(u), hist, cands, hidden_kinds(c)) for c in ("no_text", "no_image"))
        assert "tx" in full and "vx" in full
        assert "tx" not in no_text and "tw" not in no_text and "vx" in no_text
        assert "vx" not in no_image and "tx" in no_image
        assert no_text.splitlines()[-1].startswith("U: ")  # 21 candidates: letters A..U


def test_reconstruction_rows_answer_with_the_items_own_keyword_line() -> None:
    """The second SFT task: the item's text above its keyword line and others' lines; the
    target letter is its line, candidates are distinct items that have keywords, and only the
    visual keywords are ever hidden (the text is on show)."""
    from metamodal.agent.menu_net import LETTERS
    from metamodal.seq.llm_rec import RECONSTRUCT_TASK, ItemKeywords, reconstruction_rows

    kw = ItemKeywords([[f"tx{i}"] if i % 5 else [] for i in range(40)], [[f"vx{i}"] for i in range(40)])
    texts = [f"words of item {i} " * 3 if i % 7 else None for i in range(40)]
    prompts, r, sizes = reconstruction_rows(kw, texts, 12, 6, hide_p=0.5, seed=0)
    assert len(prompts) == 12 and r.shape == (12, 6) and (r.sum(1) == 1).all() and (sizes == 6).all()
    hid = 0
    for p, row in zip(prompts, r, strict=True):
        lines = p.splitlines()
        assert lines[0] == RECONSTRUCT_TASK and len(lines) == 2 + 6
        item = int(lines[1].split()[4])  # "text: words of item N ..."
        assert item % 7 and item % 5  # it has text and text keywords
        answer = lines[2 + int(row.argmax())]
        assert answer.startswith(LETTERS[int(row.argmax())] + ": ") and f"tx{item}" in answer
        assert len({ln.split(": ")[1] for ln in lines[2:]}) == 6  # distinct items
        hid += "vx" not in p
    assert 0 < hid < 12  # some rows hide the visual keywords, not all
    with pytest.raises(ValueError, match="reconstruction needs at least 6"):
        reconstruction_rows(kw, [None] * 35 + ["t"] * 5, 4, 6, 0.0, 0)


def test_multimodal_sasrec_learns_the_rule_and_holds_it_with_a_modality_hidden(tmp_path: Path) -> None:
    """In process (the Ray Train path is SASRec's, below): content rows plus learned missing
    tokens; hiding a whole modality at test time keeps the next-item rule."""
    import torch

    from metamodal.data import load_dataset
    from metamodal.seq.sasrec import SASRec, SASRecParams

    ds = load_dataset(write_cycle_catalog(tmp_path / "cycle"))
    seqs = Sequences.from_split(ds, make_split(ds, "loo"))
    mods = ds.feature_modalities()
    torch.manual_seed(0)
    model = SASRec(ds.n_items, SASRecParams(dim=32, layers=1, max_len=10),
                   {m: torch.from_numpy(x.features) for m, x in mods.items()},
                   {m: torch.from_numpy(x.present) for m, x in mods.items()})  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    x, y = (torch.from_numpy(a) for a in seqs.windows(10))
    for _ in range(150):
        loss = model(x, y, model.training_hidden())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    users = seqs.users("test")
    h = torch.from_numpy(padded([seqs.history("test", int(u)) for u in users], 10))
    for hidden in ({}, {"txt": torch.ones(ds.n_items + 1, dtype=torch.bool)}):
        top = model.scores(h, hidden or None).argmax(1).numpy()
        assert (top == seqs.target["test"][users]).mean() > 0.8, hidden


def test_seq_run_learns_the_next_item_on_ray_train(tmp_path: Path, ray_session, tiny_llm: Path) -> None:
    """The keyword job (random-init tiny LLM: the machinery, not the words) resumes without
    redoing a finished shard and gives a textless item no keywords; SASRec on Ray Train learns
    a next-item rule far above popularity; keyword_llm trains on Ray Train, reads a sample of
    users, its letter read-out equals a whole forward pass, and a rerun keeps every method."""
    import dataclasses

    import torch

    from metamodal.agent.menu_net import letter_ids, load_menu_policy
    from metamodal.data.loaders.embeddings import read_modality
    from metamodal.extract.encoders import EncoderSpec
    from metamodal.extract.keywords import keyword_counts
    from metamodal.extract.pipeline import ExtractConfig, run_extraction
    from metamodal.seq.config import load_seq_config
    from metamodal.seq.run import run_seq

    cat = write_cycle_catalog(tmp_path / "cycle")
    kw = ExtractConfig(encoders=[EncoderSpec("llm_keywords", "text_keywords", arch=str(tiny_llm))],
                       actors=1, batch_size=16, shard_size=32)  # fmt: skip
    part = run_extraction(cat, tmp_path / "kw", dataclasses.replace(kw, max_new_shards=1))
    assert part.modalities["text_keywords"].complete is False
    first = (tmp_path / "kw" / "text_keywords" / "shard-00000.parquet").read_bytes()
    done = run_extraction(cat, tmp_path / "kw", kw)
    assert done.modalities["text_keywords"].encoded_now <= 60 - 32
    assert (tmp_path / "kw" / "text_keywords" / "shard-00000.parquet").read_bytes() == first  # kept
    t = read_modality(tmp_path / "kw", "text_keywords")
    why = dict(zip(t.column("item_id").to_pylist(), t.column("reason").to_pylist(), strict=True))
    assert t.num_rows == 60 and why["I000"] == why["I020"] == "text_absent"  # once each; no text, no keywords
    counts = keyword_counts(tmp_path / "kw")
    assert counts["items"] == 60 and counts["text_keywords"] <= 57 and counts["neither"] == 60 - counts["text_keywords"]
    opts = ["train.epochs=4", "train.eval_every=4", "train.lr=5e-3", "sasrec.dim=32", "sasrec.layers=1",
            "sasrec.max_len=10", "train.batch=64", f"keywords={tmp_path / 'kw'}",
            "methods=[popularity,sasrec,keyword_overlap,keyword_llm]",
            "llm.train_rows=16", "llm.reconstruct_rows=8", "llm.eval_users=12", f"llm.policy.model={tiny_llm}",
            "llm.policy.workers=1", "llm.policy.bc_epochs=1", "llm.policy.rl_epochs=0",
            "llm.policy.train_layers=1", "llm.policy.batch=8"]  # fmt: skip
    cfg = load_seq_config(opts, seeds=1)
    rep = run_seq(str(cat), tmp_path / "run", cfg)
    res = rep["results"]
    assert set(res) == {"popularity", "sasrec", "keyword_overlap", "keyword_llm"}
    assert set(res["keyword_llm"]) == set(res["keyword_overlap"]) == {"full", "no_text", "no_image"}
    pop, sas = res["popularity"]["full"], res["sasrec"]["full"]
    assert sas["sampled"]["hr@1"][0] > 0.6 > pop["sampled"]["hr@1"][0] + 0.3, (sas, pop)
    assert sas["full"]["ndcg@10"][0] > pop["full"]["ndcg@10"][0] + 0.3
    assert res["keyword_llm"]["full"]["users"] == 12 and res["sasrec"]["full"]["users"] == rep["test_users"]
    assert rep["comparisons"]["keyword_llm_vs_sasrec|no_text|sampled hr@5"]["n"] == 12
    assert res["keyword_overlap"]["full"]["users"] == rep["test_users"]  # the control reads every user
    assert rep["config"]["llm"]["eval_users"] == 12  # the report says what was run
    assert rep["comparisons"]["keyword_llm_vs_keyword_overlap|no_image|full ndcg@10"]["n"] == 12
    md = (tmp_path / "run" / "report.md").read_text()
    assert "sampled: the target among 20 random items" in md and "keyword_llm (12 users)" in md
    assert (tmp_path / "run" / "report.png").stat().st_size > 0
    got = json.loads((tmp_path / "run" / "seed0" / "keyword_llm" / "result.json").read_text())
    assert got["rows_by_task"] == {"next_item": 16, "reconstruct": 8}  # multi-task SFT
    assert got["candidate_order"] == "first_stage"  # the default: SASRec's order, validation targets
    summary = json.loads((tmp_path / "run" / "seed0" / "keyword_llm" / "summary.json").read_text())
    mn = load_menu_policy({**summary, "trunk_dtype": "float32"})  # the brute force runs in float32
    text = "recent: a b; c\nsimilar users: d\nA: x\nB: y\nC: z"
    ids = mn.tok(text + summary["answer"], add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        whole = torch.softmax(mn.net(ids).logits[0, -1, letter_ids(mn.tok, 3)].float(), -1).numpy()
    np.testing.assert_allclose(mn.probs([text], [3])[0, :3], whole, atol=1e-4)
    kept = {m: (tmp_path / "run" / "seed0" / m / "result.json").stat().st_mtime_ns for m in res}
    run_seq(str(cat), tmp_path / "run", cfg)  # the same configuration: every method kept
    assert {m: (tmp_path / "run" / "seed0" / m / "result.json").stat().st_mtime_ns for m in res} == kept
    # pointwise: only keyword_llm reruns, two rows per sampled user (target A, a negative B)
    point = run_seq(str(cat), tmp_path / "run", load_seq_config([*opts, "llm.mode=pointwise"], seeds=1))
    assert point["results"]["keyword_llm"]["full"]["users"] == 12
    got = json.loads((tmp_path / "run" / "seed0" / "keyword_llm" / "result.json").read_text())
    assert got["mode"] == "pointwise" and got["rows_by_task"] == {"next_item": 32, "reconstruct": 16}
    assert all((tmp_path / "run" / "seed0" / m / "result.json").stat().st_mtime_ns == kept[m]
               for m in ("popularity", "sasrec"))  # fmt: skip


def test_mm_sasrec_without_content_is_refused_before_any_method_runs(tmp_path: Path) -> None:
    """A run that cannot finish says so before it spends minutes on the methods it can run."""
    from metamodal.seq.config import load_seq_config
    from metamodal.seq.run import run_seq

    cat = write_cycle_catalog(tmp_path / "cycle")
    (cat / "catalog.json").write_text(json.dumps({"image_field": None}))  # its text only: no feature files
    with pytest.raises(ValueError, match="mm_sasrec needs content modalities: give features=DIR"):
        run_seq(str(cat), tmp_path / "run", load_seq_config(["methods=[popularity,mm_sasrec]"], seeds=1))
    assert not (tmp_path / "run" / "seed0").exists()


def test_only_the_llm_settings_key_only_keyword_llm() -> None:
    """Adding or retuning keyword_llm keeps the baselines' results; a shared setting reruns all."""
    from metamodal.seq.config import load_seq_config
    from metamodal.seq.run import method_key

    ds = _shuffled_ds(np.random.default_rng(5))
    a = load_seq_config()
    b = load_seq_config(["llm.eval_users=10", "keywords=/elsewhere"])
    c = load_seq_config(["n_negatives=10"])
    for m in ("popularity", "sasrec", "mm_sasrec"):
        assert method_key(a, m, ds, 0) == method_key(b, m, ds, 0) != method_key(c, m, ds, 0)
        assert method_key(a, m, ds, 0) != method_key(a, m, ds, 1)
    assert method_key(a, "keyword_llm", ds, 0) != method_key(b, "keyword_llm", ds, 0)
    # the control reads the keywords, not the LLM's settings
    assert method_key(a, "keyword_overlap", ds, 0) == method_key(load_seq_config(["llm.eval_users=10"]), "keyword_overlap", ds, 0)
    assert method_key(a, "keyword_overlap", ds, 0) != method_key(b, "keyword_overlap", ds, 0)


def _prompt_maker():
    from metamodal.seq.llm_rec import ItemKeywords, Neighbours, PromptMaker

    ds = _shuffled_ds(np.random.default_rng(4))
    seqs = Sequences.from_split(ds, make_split(ds, "loo"))
    kw = ItemKeywords([[f"tx{i}", f"tw{i}"] for i in range(40)], [[f"vx{i}"] if i % 3 else [] for i in range(40)])
    return PromptMaker(seqs, kw, Neighbours(np.random.default_rng(0).normal(size=(30, 8)), k=5))


def test_pointwise_keyword_prompts_share_the_context_and_end_with_their_candidate() -> None:
    """One prompt per candidate: the context (task, answer key, history, neighbours) before
    ``SHARED`` is the same for all, the candidate's own line after it, and a hidden modality's
    keywords appear nowhere; training rows are the target's prompt (A) and a negative's (B)."""
    from metamodal.agent.menu_net import SHARED
    from metamodal.seq.llm_rec import NEXT_KEY, hidden_kinds, reconstruction_rows, training_rows

    make = _prompt_maker()
    u = int(make.seqs.users("test")[0])
    hist, cands = make.seqs.history("test", u), np.arange(21)
    for cond in ("full", "no_text", "no_image"):
        ps = make.points(u, hist, cands, hidden_kinds(cond))
        assert len(ps) == 21 and len({p.rpartition(SHARED)[0] for p in ps}) == 1 and NEXT_KEY in ps[0]
        assert ps[7].rpartition(SHARED)[2] == " " + make.kw.line(7, hidden_kinds(cond))
        text = "".join(ps)
        assert ("tx" in text) == (cond != "no_text") and ("vx" in text) == (cond != "no_image")
    prompts, r, sizes = training_rows(make, 10, 21, 0.0, 0, "pointwise")
    assert len(prompts) == 20 and (sizes == 2).all() and (r.argmax(1) == np.tile([0, 1], 10)).all()
    for a, b in zip(prompts[::2], prompts[1::2], strict=True):
        assert a.rpartition(SHARED)[0] == b.rpartition(SHARED)[0] and a != b
    texts = [f"words of item {i} " * 3 for i in range(40)]
    prompts, r, sizes = reconstruction_rows(make.kw, texts, 6, 21, 0.0, 0, "pointwise")
    assert len(prompts) == 12 and (sizes == 2).all()
    for a in prompts[::2]:  # the A row shows the item's own line
        item = int(a.splitlines()[3].split()[4])  # "text: words of item N ..."
        assert a.rpartition(SHARED)[2] == " " + make.kw.line(item, frozenset())


def test_pointwise_read_out_equals_a_brute_force_forward(tiny_llm: Path) -> None:
    """Each candidate's score is log p(A) over {A, B} at the end of its whole prompt, computed
    by one forward pass of the LM over exactly its tokens (random weights, LoRA non-zero)."""
    import torch

    from metamodal.agent.menu_net import MenuPolicyConfig, build_menu_net, letter_ids
    from metamodal.seq.llm_rec import ANSWER, hidden_kinds, llm_reader

    mn = build_menu_net(MenuPolicyConfig(model=str(tiny_llm), train_layers=1, lora_r=4, answer=ANSWER), 2, "float32")
    with torch.no_grad():
        for n, w in mn.net.named_parameters():
            if "lora_B" in n:
                w.normal_(0, 0.5)
    make = _prompt_maker()
    users = make.seqs.users("test")[:3]
    hists = [make.seqs.history("test", int(u)) for u in users]
    cands = [np.arange(5) + 3 * k for k in range(3)]
    got = llm_reader(mn, make, "pointwise")(users, hists, cands, hidden_kinds("no_image"))
    assert got.shape == (3, 5)
    for r, (u, h, c) in enumerate(zip(users, hists, cands, strict=True)):
        for j, p in enumerate(make.points(int(u), h, c, hidden_kinds("no_image"))):
            with torch.no_grad():
                logits = mn.net(torch.tensor([mn._ids(p)])).logits[0, -1, letter_ids(mn.tok, 2)]
            np.testing.assert_allclose(got[r, j], torch.log_softmax(logits, -1)[0].item(), atol=1e-4)


def _history_scores(hists: list[np.ndarray]) -> np.ndarray:
    """A stand-in first stage: fixed scores per history, the history itself -inf."""
    out = np.stack([np.random.default_rng([len(h), int(h.sum())]).normal(size=40) for h in hists])
    for r, h in enumerate(hists):
        out[r, h] = -np.inf
    return out


def test_first_stage_order_trains_on_validation_items_and_is_what_evaluation_shows() -> None:
    """``candidate_order=first_stage``: each training row targets its user's validation item
    after the training items, its candidate lines sorted by the first stage; evaluation shows
    the sampled candidates in that order too, so a reader that always answers the first
    letter scores exactly what the first stage does — and not when they are shuffled."""
    from metamodal.seq.llm_rec import RECENT, evaluate_reader, training_rows

    make = _prompt_maker()
    seqs, line_of = make.seqs, {make.kw.line(i, frozenset()): i for i in range(40)}
    prompts, r, _ = training_rows(make, 12, 6, 0.0, 0, "listwise", _history_scores)
    assert len(prompts) == 12
    for p, row in zip(prompts, r, strict=True):
        lines = p.splitlines()
        recent = [line_of[x] for x in lines[1].removeprefix("recent: ").split("; ")]
        (u,) = [u for u in seqs.users("valid") if list(seqs.train[u][-RECENT:]) == recent]
        cands = [line_of[x.split(": ", 1)[1]] for x in lines[3:]]
        target = cands.pop(int(row.argmax()))
        assert target == seqs.target["valid"][u] and not set(cands) & set(seqs.seen[u])
        cands.insert(int(row.argmax()), target)
        assert (np.diff(_history_scores([seqs.train[u]])[0][cands]) <= 0).all()
    users = seqs.users("test")
    first = _history_scores([seqs.history("test", int(u)) for u in users])
    negs = sample_negatives(40, seqs.seen, users, 5, seed=2)

    def first_letter(users, hists, cands, hidden):
        return np.tile(-np.arange(len(cands[0]), dtype=float), (len(cands), 1))

    want = sampled_metrics(first[np.arange(len(users)), seqs.target["test"][users]],
                           np.take_along_axis(first, negs, 1))  # fmt: skip
    got = evaluate_reader(first_letter, seqs, users, negs, "full", first, 0, ordered=True)["sampled"]
    shuffled = evaluate_reader(first_letter, seqs, users, negs, "full", first, 0)["sampled"]
    assert all(np.array_equal(got[m], want[m]) for m in want)
    assert not np.array_equal(shuffled["ndcg@5"], want["ndcg@5"])


def test_the_keyword_control_scores_the_words_its_prompt_shows() -> None:
    """keyword_overlap against a brute force over keyword_llm's own listwise prompt: a
    candidate's score is the idf-weighted count of its line's words found on the prompt's
    recent and similar-users lines, so under no_text / no_image nothing hidden can count; ties
    break at random, below any word's weight."""
    from metamodal.agent.menu_net import LETTERS
    from metamodal.seq.keyword_overlap import overlap_scores
    from metamodal.seq.llm_rec import ItemKeywords, Neighbours, PromptMaker, hidden_kinds

    ds = _shuffled_ds(np.random.default_rng(6))
    seqs = Sequences.from_split(ds, make_split(ds, "loo"))
    kw = ItemKeywords([[f"g{i % 4}", f"t{i}"] if i % 6 else [] for i in range(40)],
                      [[f"v{i % 5}"] if i % 3 else [] for i in range(40)])  # fmt: skip
    make = PromptMaker(seqs, kw, Neighbours(np.random.default_rng(0).normal(size=(30, 8)), k=4))
    users = seqs.users("test")
    hists = [seqs.history("test", int(u)) for u in users]
    cands = [np.random.default_rng(int(u)).choice(40, 8, replace=False) for u in users]
    for cond in ("full", "no_text", "no_image"):
        hidden = hidden_kinds(cond)
        lines = [kw.line(i, hidden).split() for i in range(40)]
        df = {w: sum(w in set(ln) for ln in lines) for w in {w for ln in lines for w in ln}}
        got = overlap_scores(make, users, hists, cands, hidden, seed=0)
        assert (got == overlap_scores(make, users, hists, cands, hidden, seed=0)).all()  # seeded
        for r, (u, h, c) in enumerate(zip(users, hists, cands, strict=True)):
            shown = make(int(u), h, c, hidden).splitlines()
            context = set(shown[1].removeprefix("recent: ").replace(";", " ").split())
            context |= set(shown[2].removeprefix("similar users: ").split())
            for j, line in enumerate(shown[3:]):
                words = set(line.removeprefix(f"{LETTERS[j]}: ").split()) - {"-"}
                want = sum(np.log(40 / df[w]) for w in words & context)
                assert want <= got[r, j] < want + 1e-6, (cond, line)
        assert all(len(set(row)) == len(row) for row in got)  # no tie is left
