"""``metamodal monitor``: a planted drift and a coverage drop are flagged, an unchanged run is
not. The extraction runs are written from generated embeddings with the extraction's own shard
writer and manifest, and read back through the checked reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from metamodal.monitor import DriftConfig, run_monitor

N, DIM = 400, 24


def _latent(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Items in 8 clusters: (latent [N, 8], cluster of each item)."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 8, N)
    return np.eye(8)[cluster] * 3 + rng.normal(size=(N, 8)), cluster


def _encode(z: np.ndarray, proj_seed: int, noise: float, seed: int) -> np.ndarray:
    proj = np.random.default_rng(proj_seed).normal(size=(z.shape[1], DIM))
    x = z @ proj + noise * np.random.default_rng(seed).normal(size=(len(z), DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_run(out: Path, mods: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    from metamodal.extract.pipeline import _write_shard
    from metamodal.rundir import ExtractManifest, ExtractRun, ModalityEntry

    run = ExtractRun(out)
    run.start(False)
    ids = np.array([f"i{k}" for k in range(N)])
    entries = {}
    for name, (emb, present) in mods.items():
        (out / name).mkdir()
        rows = {i: (emb[i] if present[i] else None, present[i], "" if present[i] else "absent", "") for i in range(N)}
        _write_shard(out / name / "shard-00000.parquet", ids, name, rows, DIM)
        entries[name] = ModalityEntry(complete=True, source=name.split("_")[0], present=int(present.sum()),
                                      missing=int((~present).sum()), reasons={},
                                      shard_sha256=run.shard_checksums(name))  # fmt: skip
    run.write_manifest(ExtractManifest(items=N, catalog="generated", config={}, modalities=entries,
                                       random_init={n: False for n in mods}))  # fmt: skip
    return out


def test_planted_drift_and_coverage_drop_are_flagged_an_unchanged_run_is_not(tmp_path: Path) -> None:
    z, _ = _latent()
    everyone = np.ones(N, bool)
    ref = write_run(tmp_path / "ref", {"text_x": (_encode(z, 1, 0.3, 0), everyone),
                                       "image_x": (_encode(z, 2, 0.3, 1), everyone)})  # fmt: skip
    # the same encoders run again (a little nondeterminism): nothing to flag
    same = write_run(tmp_path / "same", {"text_x": (_encode(z, 1, 0.3, 0) + 1e-4, everyone),
                                         "image_x": (_encode(z, 2, 0.3, 1), everyone)})  # fmt: skip
    # image re-encoded by another model; text lost for 30% of the items
    dropped = everyone.copy()
    dropped[np.random.default_rng(5).permutation(N)[: int(0.3 * N)]] = False
    changed = write_run(tmp_path / "changed", {"text_x": (_encode(z, 1, 0.3, 0), dropped),
                                               "image_x": (_encode(z, 7, 0.3, 1), everyone)})  # fmt: skip
    # other items from the same catalogue distribution, the same encoders: no drift either
    z2, _ = _latent(seed=1)
    fresh = write_run(tmp_path / "fresh", {"text_x": (_encode(z2, 1, 0.3, 2), everyone),
                                           "image_x": (_encode(z2, 2, 0.3, 3), everyone)})  # fmt: skip
    cfg = DriftConfig(permutations=100)

    quiet = run_monitor(ref, same, tmp_path / "m_same", drift_cfg=cfg)
    assert quiet["flags"] == []
    for m in quiet["modalities"].values():
        assert m["drift"]["detected"] is False and m["drift"]["p_value"] > 0.05
        assert m["neighbours"]["overlap@k"] > 0.9 and not m["coverage"]["dropped"]

    ids_differ = run_monitor(ref, fresh, tmp_path / "m_fresh", drift_cfg=cfg)
    assert ids_differ["flags"] == [], ids_differ["modalities"]

    loud = run_monitor(ref, changed, tmp_path / "m_changed", drift_cfg=cfg)
    img, txt = loud["modalities"]["image_x"], loud["modalities"]["text_x"]
    assert img["drift"]["detected"] is True and img["drift"]["p_value"] < 0.05
    assert img["neighbours"]["overlap@k"] < 0.8  # the geometry moved too
    assert txt["coverage"] == {**txt["coverage"], "reference": N, "current": int(dropped.sum()), "dropped": True}
    assert txt["drift"]["detected"] is False  # fewer items, the same encoder: not a drift
    assert [f.split(":")[0] for f in loud["flags"]] == ["text_x", "image_x"]
    written = json.loads((tmp_path / "m_changed" / "monitor.json").read_text())
    assert written["modalities"]["image_x"]["drift"]["detected"] is True
    assert (tmp_path / "m_changed" / "coverage_drift.png").stat().st_size > 1000
    assert "| image_x |" in (tmp_path / "m_changed" / "monitor.md").read_text()
