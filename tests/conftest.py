"""Shared fixtures. Tests generate their own data: nothing here needs ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")  # else ~1.7 s per report

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic shop in the generic format (300 items, 240 users)."""
    from metamodal.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("shop")
    return generate(
        out, SynthConfig(n_items=300, n_users=240, seed=3, image_size=32), progress=False
    )


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole run (start + stop cost 3-5 s). Four logical CPUs on a
    2-core host so Ray Data's read tasks and actors never starve each other."""
    import os

    import ray

    # replicas report their metrics every 2 s (10 s by default): the Serve metrics test waits less
    os.environ.setdefault("RAY_metrics_report_interval_ms", "2000")
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=512 * 2**20,
        configure_logging=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def world(small_shop: Path):
    """The shop plus a text and an image feature modality (category signal + noise), a split,
    10% cold items, and an item-vector 'retriever' (truncated SVD of the training matrix)."""
    import numpy as np

    from metamodal.agent.episodes import EpisodeBuilder, PoolConfig
    from metamodal.agent.evidence import EvidenceStore
    from metamodal.data import FeatureModality, load_dataset
    from metamodal.data.missing import MissingSpec, make_missingness
    from metamodal.data.splits import make_split

    ds = load_dataset(small_shop)
    rng = np.random.default_rng(0)
    cats = ds.item_meta["category"].astype("category").cat.codes.to_numpy()
    onehot = np.eye(cats.max() + 1)[cats]
    for name, kind, src in (("text_vec", "text", "text"), ("image_vec", "image", "image")):
        x = np.hstack([onehot, 0.3 * rng.normal(size=(ds.n_items, 6))]).astype(np.float32)
        ds.modalities[name] = FeatureModality(name, kind, ds.modalities[src].present.copy(), x)
    split = make_split(ds, None, 0)
    miss = make_missingness(ds, split, MissingSpec(cold_item_frac=0.1, seed=0))
    m = ds.matrix(miss.train_indices(ds, split)).toarray()
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    users, items = u[:, :8] * s[:8], vt[:8].T
    store = EvidenceStore.build(ds, graph_items=items)
    builder = EpisodeBuilder(
        ds, split,
        user_scores=lambda uid: users[uid] @ items.T,
        history_scores=lambda hist: items[hist].mean(0) @ items.T if len(hist) else np.zeros(ds.n_items),
        miss=miss, cfg=PoolConfig(pool_size=12, fixed_k=20),
        content_scores=store.catalogue_scores,
    )  # fmt: skip
    return ds, split, miss, builder, store


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init 2-layer Llama with SmolLM2's tokenizer (weights are random: this checks
    the machinery, not the policy)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from metamodal.llm import load_tokenizer

    d = tmp_path_factory.mktemp("tiny_llm")
    tok = load_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    with torch.random.fork_rng():  # the same weights every run: what it writes must not vary by run
        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def visual_store(world):
    """The world's store plus visual keywords for the image group (as extraction writes them
    for a pretrained image classifier): words no text keyword uses."""
    from dataclasses import replace

    from metamodal.agent.evidence import EvidenceStore
    from metamodal.data.modalities import TextModality

    ds, _, _, b, store = world
    cats = ds.item_meta["category"].astype("category").cat.codes.to_numpy()
    present = ds.modalities["image"].present
    texts = [f"vis{c}shape, vis{i % 5}tone" if p else None for i, (c, p) in enumerate(zip(cats, present, strict=True))]
    mods = {**ds.modalities, "image_vec_labels": TextModality("image_vec_labels", "image", present.copy(), texts)}
    return EvidenceStore.build(replace(ds, modalities=mods), graph_items=store.graph_items)
