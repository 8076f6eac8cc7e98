"""``metamodal monitor REFERENCE CURRENT --out DIR``: per-modality coverage and its change,
embedding drift, nearest-neighbour stability and, given a trained zoo run, the fused score's
calibration per modality pattern. CURRENT is an extraction run, or a catalogue: then it is
extracted first with the reference's own encoders, so only the data can differ.

Writes ``DIR/monitor.json`` (``{"modalities": {name: {"coverage": {"reference": n, "current":
n, ...}, "drift": {"detected": bool, "score": x, "p_value": x}, "neighbours": {...}}},
"calibration": {...}, "flags": [...]}``), ``monitor.md`` and the plots beside them."""

from __future__ import annotations

from pathlib import Path

from metamodal.monitor.calibration import CalibrationConfig, calibration
from metamodal.monitor.drift import DriftConfig, compare_runs
from metamodal.monitor.report import write_report

__all__ = ["CalibrationConfig", "DriftConfig", "current_run", "run_monitor"]


def current_run(current: Path, reference: Path, out: Path, fmt: str | None) -> Path:
    """CURRENT itself when it is an extraction run; a catalogue extracted with the reference's
    encoders (into ``out/current_embeddings``, resumable) otherwise."""
    if (current / "manifest.json").is_file():
        return current
    from metamodal.extract.encoders import EncoderSpec
    from metamodal.extract.pipeline import ExtractConfig, run_extraction
    from metamodal.rundir import ExtractRun

    conf = ExtractRun(reference).manifest().config
    cfg = ExtractConfig(encoders=[EncoderSpec(**e) for e in conf["encoders"]],
                        shard_size=conf.get("shard_size", 512))  # fmt: skip
    target = out / "current_embeddings"
    print(f"monitor: {current} is a catalogue: extracting it with the reference's encoders -> {target}", flush=True)
    run_extraction(current, target, cfg, fmt)
    return target


def run_monitor(reference: str | Path, current: str | Path, out: str | Path, zoo: str | Path | None = None,
                fmt: str | None = None, drift_cfg: DriftConfig | None = None) -> dict:  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cur = current_run(Path(current), Path(reference), out, fmt)
    result = {"reference": str(reference), "current": str(current), "current_run": str(cur),
              "modalities": compare_runs(reference, cur, drift_cfg or DriftConfig())}  # fmt: skip
    if zoo is not None:
        result["calibration"] = calibration(zoo, CalibrationConfig())
    result["flags"] = flags(result)
    write_report(result, out)
    return result


def flags(result: dict) -> list[str]:
    """What a person must look at: drift detected, coverage dropped, a miscalibrated pattern."""
    out = []
    for name, m in result["modalities"].items():
        cov, d = m["coverage"], m["drift"]
        if cov["dropped"]:
            out.append(f"{name}: coverage fell from {cov['reference']:,} to {cov['current']:,} items present")
        if d.get("detected"):
            out.append(f"{name}: embedding drift (MMD² {d['score']:.4g}, p = {d['p_value']:.3g}; "
                       f"{100 * d['drifted_dimensions']:.0f}% of dimensions moved)")  # fmt: skip
    cal = result.get("calibration", {})
    overall = cal.get("overall", {}).get("ece")
    for name, p in cal.get("patterns", {}).items():
        if overall is not None and p["pairs"] >= 50 and p["ece"] > max(0.05, 2 * overall):
            out.append(f"calibration: items showing {name}: ECE {p['ece']:.3f} (overall {overall:.3f})")
    return out
