"""Human-readable dataset summary for ``metamodal data inspect``."""

from __future__ import annotations

from metamodal.data.dataset import Dataset


def describe(ds: Dataset) -> str:
    s = ds.summary()
    lines = [
        f"dataset      {s['name']}  ({s['format']}: {s['path']})",
        f"users        {s['users']:,}",
        f"items        {s['items']:,}  ({s['items_without_interactions']:,} without interactions)",
        f"interactions {s['interactions']:,}  (density {s['density']:.5f}; per user min "
        f"{s['interactions_per_user']['min']}, median {s['interactions_per_user']['median']:g}, "
        f"max {s['interactions_per_user']['max']})",
        f"fields       rating={'yes' if s['has_rating'] else 'no'}  timestamp={'yes' if s['has_timestamp'] else 'no'}",
    ]
    if "splits" in s:
        lines.append("splits       " + "  ".join(f"{k}={v:,}" for k, v in s["splits"].items()))
    if s["modalities"]:
        lines.append("modalities   (items present / items)")
        for name, n in s["modalities"].items():
            dim = s["modality_dims"].get(name)
            extra = f", {dim}-d features" if dim else ", raw"
            lines.append(
                f"  {name:<20} {s['modality_kinds'][name]:<6} {n:>7,} / {s['items']:,} "
                f"({n / max(1, s['items']):.1%}{extra})"
            )
    else:
        lines.append("modalities   none (interactions only)")
    lines += ["  " + line for line in ds.report.lines()]
    return "\n".join(lines)
