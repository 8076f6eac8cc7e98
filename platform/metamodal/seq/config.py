"""``metamodal seq run``'s configuration: defaults ← ``key.path=value`` overrides (unknown keys
fail naming them) ← the ``--quick`` preset ← ``--seeds``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from metamodal.agent.menu_net import MenuPolicyConfig
from metamodal.seq.sasrec import SASRecParams
from metamodal.seq.train import SeqTrainConfig

METHODS = ("popularity", "sasrec", "mm_sasrec", "keyword_overlap", "keyword_llm")
KEYWORD_READERS = ("keyword_overlap", "keyword_llm")  # they need keywords=DIR
READS_CONTENT = ("mm_sasrec", *KEYWORD_READERS)  # the others' scores do not depend on a condition


class KeywordLLMConfig(BaseModel):
    """The keyword-RAG LLM. Its prompts are ~250 tokens through SmolLM2-135M: about 1 s each
    on a CPU core, so the CPU defaults read a sample of test users; on GPUs set
    ``eval_users=null`` (every test user) and more ``train_rows``."""

    model_config = ConfigDict(extra="forbid")

    train_rows: int = Field(300, ge=1, description="next-item training prompts (one per sampled user)")
    reconstruct_rows: int = Field(100, ge=0, description="keyword-reconstruction training prompts (one per sampled item; 0: next-item SFT alone)")  # fmt: skip
    eval_users: int | None = Field(100, ge=1, description="test users it reads (null: all); every method is compared on the same ones")  # fmt: skip
    hide_p: float = Field(0.3, ge=0.0, lt=1.0, description="training: P(text, resp. image, keywords hidden)")
    mode: Literal["listwise", "pointwise"] = Field("listwise", description="listwise: the candidates as lettered lines of one prompt; pointwise: one prompt per candidate, answered next / not next")  # fmt: skip
    candidate_order: Literal["first_stage", "shuffled"] = Field("first_stage", description="first_stage: SASRec's order, as LlamaRec reads a retriever's candidates — training rows then target the users' validation items, which SASRec never trained on; shuffled: a random order in training and on the sampled protocol, so keywords alone must find the target (the full protocol reads SASRec's top in its order either way)")  # fmt: skip
    policy: MenuPolicyConfig = MenuPolicyConfig(bc_epochs=3, rl_epochs=1)


class SeqConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: str | None = Field(None, description="an extraction run (`metamodal extract --out DIR`): the content modalities")  # fmt: skip
    modalities: list[str] | None = Field(None, description="feature modalities mm_sasrec reads (default: all)")
    keywords: str | None = Field(None, description="a `metamodal keywords` run: the item keywords keyword_llm and keyword_overlap read")
    methods: list[Literal[METHODS]] | None = Field(None, description="default: all, the keyword readers when keywords is given")  # type: ignore[valid-type]  # fmt: skip
    seeds: int = Field(3, ge=1)
    n_negatives: int = Field(20, ge=1, description="the sampled protocol's random negatives per target")
    normalise: Literal["none", "l2", "center_l2"] = "center_l2"
    sasrec: SASRecParams = SASRecParams()
    train: SeqTrainConfig = SeqTrainConfig()
    llm: KeywordLLMConfig = KeywordLLMConfig()

    def method_list(self) -> list[str]:
        if self.methods is not None:
            return list(self.methods)
        return [m for m in METHODS if m not in KEYWORD_READERS or self.keywords]


def quick(cfg: SeqConfig) -> SeqConfig:
    """Minutes on 2 cores: a short history window, a small encoder, few epochs, one seed."""
    return cfg.model_copy(update={
        "seeds": 1,
        "sasrec": cfg.sasrec.model_copy(update={"dim": 32, "max_len": 20, "layers": 1}),
        "train": cfg.train.model_copy(update={"epochs": 12, "eval_every": 3, "patience": 2}),
        "llm": cfg.llm.model_copy(update={"train_rows": 160, "reconstruct_rows": 60, "eval_users": 60}),
    })  # fmt: skip


def load_seq_config(overrides: list[str] | None = None, quick_mode: bool = False, seeds: int | None = None) -> SeqConfig:
    from metamodal.config import load_layered

    return load_layered(SeqConfig, overrides, quick if quick_mode else None, seeds)
