"""Wall time of ``metamodal pipeline`` end to end, stage by stage, on the catalogues the issue
names: the demo (the generated shop, ``--quick --serve``, what ``make demo`` runs), a 10k-item
catalogue in MovieLens-latest layout (``--quick``) and ``../shared/data/ml100k-mm`` (``--quick``).
Each case runs in a fresh output folder, alone (two torch processes on 2 cores slow each other);
its summary's per-stage seconds go into ``benchmarks/results/pipeline_wall.json`` and ``.md``.

    python benchmarks/pipeline_wall.py --cases demo shop10k ml100k --work /tmp/pipeline_wall
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shop10k(work: Path) -> Path:
    """The generator's shop at 10,000 items and 6,000 users, written as MovieLens-latest."""
    from metamodal.data import load_dataset
    from metamodal.data.export import write_movielens_latest
    from metamodal.data.synth import SynthConfig, generate

    target = work / "ml-latest-10k"
    if not (target / "ratings.csv").is_file():
        shop = generate(work / "shop10k", SynthConfig(n_items=10_000, n_users=6_000), progress=False)
        write_movielens_latest(load_dataset(shop), target)
    return target


def command(case: str, work: Path, data: Path) -> list[str]:
    out = str(work / f"run_{case}")
    if case == "demo":
        return [sys.executable, str(ROOT / "jobs" / "pipeline.py"), "--out", out, "--quick", "--serve"]
    catalog = {"shop10k": lambda: shop10k(work), "ml100k": lambda: data / "ml100k-mm"}[case]()
    return [sys.executable, "-m", "metamodal.cli", "pipeline", str(catalog), "--out", out, "--quick"]


def run_case(case: str, work: Path, data: Path) -> dict:
    cmd = command(case, work, data)
    shutil.rmtree(work / f"run_{case}", ignore_errors=True)  # else the pipeline reuses its stages
    print(f"== {case}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(work / f"{case}.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    wall = time.perf_counter() - t0
    summary = json.loads((work / f"run_{case}" / "summary.json").read_text()) if rc == 0 else {}
    stages = {k: v.get("seconds") for k, v in summary.get("stages", {}).items()}
    print(f"   rc {rc}, {wall:.0f} s: {stages}", flush=True)
    return {"case": case, "command": cmd, "rc": rc, "wall_seconds": round(wall, 1), "stages": stages,
            "warnings": summary.get("warnings", []), "log": str(work / f"{case}.log")}  # fmt: skip


def markdown(rows: list[dict]) -> str:
    names = list(dict.fromkeys(k for r in rows for k in r["stages"]))
    lines = ["| case | rc | wall (s) | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for r in rows:
        cells = [f"{r['stages'][n]:.0f}" if r["stages"].get(n) is not None else "–" for n in names]
        lines.append(f"| {r['case']} | {r['rc']} | {r['wall_seconds']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["demo", "shop10k", "ml100k"], choices=["demo", "shop10k", "ml100k"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/pipeline_wall"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pipeline_wall")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the real datasets")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    new = {c: run_case(c, a.work, a.data) for c in a.cases}
    old = json.loads(a.out.with_suffix(".json").read_text())["cases"] if a.out.with_suffix(".json").is_file() else []
    rows = [new.pop(r["case"], r) for r in old] + list(new.values())  # cases not rerun are kept
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps({"machine": "2 cores", "cases": rows}, indent=2))
    a.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
