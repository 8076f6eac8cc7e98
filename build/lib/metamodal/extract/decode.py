"""Image decoding for the CPU tasks of extraction, and the one preprocessing every image path
shares (extraction, alignment, the agent's image tool).

Only PIL and numpy here, on purpose: Ray starts a worker process per concurrent decode task,
and importing torch + open_clip in each one cost ~7 s of CPU apiece — on 2 cores that was most
of the job. The output is uint8 ``[S, S, 3]`` (4x smaller than float pixels in the object
store); scaling and mean/std normalisation happen on the encoder's device.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

# open_clip's defaults (OPENAI_DATASET_MEAN/STD); an architecture with other statistics states
# them in its config and the encoder reads them from there.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_image(path: str, size: int) -> tuple[np.ndarray | None, str]:
    """(uint8 [size, size, 3], "") or (None, reason): resize the short side to ``size``
    (bicubic) and centre-crop, as open_clip's eval transform does."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it is large
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError:
        return None, "image_file_missing"
    except UnidentifiedImageError:
        return None, "image_unreadable"
    except (OSError, SyntaxError, ValueError):
        return None, "image_corrupt"
    w, h = rgb.size
    if min(w, h) < 2:
        return None, "image_too_small"
    if w <= h:
        nw, nh = size, max(size, int(size * h / w))
    else:
        nw, nh = max(size, int(size * w / h)), size
    rgb = rgb.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    return np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.uint8), ""


def decode_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """CPU task: image paths to uint8 pixels; a bad file becomes ``ok=False`` with a reason."""
    n = len(batch["idx"])
    ok = np.zeros(n, dtype=bool)
    reasons = np.array([""] * n, dtype=object)
    pixels = np.zeros((n, size, size, 3), dtype=np.uint8)
    for k, path in enumerate(batch["payload"]):
        px, why = load_image(str(path), size)
        ok[k], reasons[k] = px is not None, why
        if px is not None:
            pixels[k] = px
    return {
        "idx": batch["idx"],
        "payload": batch["payload"],
        "ok": ok,
        "reason": reasons,
        "pixels": pixels,
    }
