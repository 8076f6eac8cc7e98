"""Image decoding for the CPU tasks of extraction, and the one preprocessing every image path
shares (extraction, alignment, the agent's image tool).

Only PIL and numpy here, on purpose: Ray starts a worker process per concurrent decode task,
and importing torch + open_clip in each one cost ~7 s of CPU apiece — on 2 cores that was most
of the job. The output is uint8 ``[S, S, 3]`` (4x smaller than float pixels in the object
store); scaling and mean/std normalisation happen on the encoder's device.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

# open_clip's defaults (OPENAI_DATASET_MEAN/STD); an architecture with other statistics states
# them in its config and the encoder reads them from there.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# Checked from the header, before any pixel is decoded: Pillow's own bomb limit (~89 MP) is far
# above what an item photo needs, and a 1 x 100,000 strip resized to a square would not fit.
MAX_PIXELS = 25_000_000
MAX_ASPECT = 20.0
# Pillow warns from 89 MP on; every image here is refused above MAX_PIXELS before decoding.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _open_checked(path, size: int) -> tuple[Image.Image | None, str]:
    with Image.open(path) as im:
        w, h = im.size  # the header only: nothing decoded yet
        if w * h > MAX_PIXELS:
            return None, "image_too_large"
        if min(w, h) < 2:
            return None, "image_too_small"
        if max(w, h) > MAX_ASPECT * min(w, h):
            return None, "image_extreme_aspect"
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it is large
        im.load()
        return im.convert("RGB"), ""


def load_image(path, size: int) -> tuple[np.ndarray | None, str]:
    """(uint8 [size, size, 3], "") or (None, reason) for a path or file object: the centre
    square (the short side) resized to ``size`` (bicubic) — open_clip's eval transform, cropped
    before resizing so no intermediate image is larger than the source. Untrusted input: every
    failure is a reason, never an exception."""
    try:
        rgb, why = _open_checked(path, size)
        if rgb is None:
            return None, why
    except FileNotFoundError:
        return None, "image_file_missing"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # (warnings as errors)
        return None, "image_too_large"
    except UnidentifiedImageError:
        return None, "image_unreadable"
    except Exception:  # noqa: BLE001 - malformed files raise many kinds (OSError, EOFError, struct.error …)
        return None, "image_corrupt"
    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    box = (left, top, left + side, top + side)
    return np.asarray(rgb.resize((size, size), Image.Resampling.BICUBIC, box=box), dtype=np.uint8), ""


class CatalogueNotOnNode(RuntimeError):
    """The decode task's node does not have the catalogue: every image would read as missing."""


def decode_batch(batch: dict[str, np.ndarray], size: int,
                 catalogue: str | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """CPU task: image paths to uint8 pixels; a bad file becomes ``ok=False`` with a reason.
    ``catalogue``: the catalogue's path on the driver; a node without it fails the job instead
    of reporting every image as missing."""
    if catalogue is not None and not os.path.exists(catalogue):
        import socket

        raise CatalogueNotOnNode(
            f"{catalogue}: not on node {socket.gethostname()}, where this decode task ran; put "
            "the catalogue where every node reads it (the synced ~/metamodal or a shared mount)"
        )
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
