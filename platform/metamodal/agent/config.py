"""``metamodal mma run`` configuration: typed, unknown keys rejected, ``--quick`` a preset."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from metamodal.agent.episodes import PoolConfig
from metamodal.agent.menu_net import MenuPolicyConfig

# the zoo's state of the art (DGMRec is the MMA paper's strongest baseline) beside the fusion
# and missing-modality models: MMA is measured against the strongest of them on validation
BASELINES = (
    "lgmrec",
    "dgmrec",
    "freedom",
    "dragon",
    "late_fusion",
    "margo",
    "magnet",
    "impute_zero",
    "impute_mean",
    "feature_propagation",
    "generative_reconstruction",
)


class MMAConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retriever: str = "lightgcn"  # first stage and the graph tool's item vectors
    # the `fusion` tool's model: a trained baseline's masked scores; "auto" picks on validation
    tool_model: str | None = "auto"
    baselines: list[str] = list(BASELINES)
    zoo_epochs: int | None = Field(None, ge=1)  # every zoo run's epoch budget (None: its config's)
    zoo_overrides: list[str] = []  # passed to every zoo run, e.g. "data.features=DIR"
    cold_item_frac: float = 0.1  # items whose training interactions the zoo never sees
    # zoo runs trained at once, each on its share of the CPUs (None: as many as there are CPUs)
    zoo_concurrency: int | None = Field(None, ge=1)
    pool: PoolConfig = PoolConfig()
    fit_episodes: int = 1000  # per task, fit validation users (each crossed with all patterns)
    fit_fixed_users: int = 600
    select_episodes: int = 300  # per task, select users: ≥ 500 rows per bucket once crossed
    # of those, the rows per target-positive bucket MMA-Auto reads (its validation row and
    # the clarification weight; nothing else of MMA's is selected there)
    select_llm_rows: int = 200
    select_fixed_users: int = 600
    test_episodes: int = 200  # per task
    fixed_users: int = 400
    split: Literal["mmrec", "user_time"] = "mmrec"  # or "user_time": per-user chronological 80/10/10 (the MMA paper)
    fusion_tools: int = 3  # zoo models offered to the routes as tools
    # how they are chosen on select: "coverage" (the set whose best member per bucket is best:
    # a model strong where one modality survives gets a slot), "coverage_fixed" (that, plus the
    # fixed pools' best model as one more tool) or "mean" (best over all pools)
    fusion_tool_choice: Literal["mean", "coverage", "coverage_fixed"] = "coverage"
    menu_size: int = 8  # routes per bucket (+ RuleRouter-Fuse's)
    llm_rows: int = 150  # the LLM router's training rows per bucket where the gate routes
    llm_rule_rows: int = 30  # ... and per bucket whose target is the rule's one route
    # the LLM router's warm-start targets: "gate" — the learned gate's cross-fitted route
    # probabilities in buckets where the gate beats RuleRouter-Fuse on select, the rule's route
    # elsewhere (denoised: one episode's single-target reward is mostly noise); "rewards" —
    # softmax of each row's own (shrunk) rewards
    warm_start: Literal["gate", "rewards"] = "gate"
    tau: float = 0.05  # soft-target temperature (NDCG units), for warm_start=rewards
    shrink: float = 20.0  # empirical-Bayes shrinkage of a row's rewards to its bucket's mean
    llm_ablations: list[str] = ["bc_only", "shuffled", "bucket_prompt"]
    # the listwise LLM tool: "auto" turns it on where the driver has a GPU (it reads every
    # text-observed episode's candidates, too slow for the 2-core default)
    llm_rank: Literal["auto", "on", "off"] = "auto"
    llm_rank_rows: int = 600  # its training episodes (SFT + RL)
    llm_rank_mode: Literal["pointwise", "listwise"] = "pointwise"
    # tools built outside the agent, by path ("package.module:function", ``agent.extensions``),
    # e.g. the keyword-RAG sequential LLM: "metamodal.seq.mma_tool:keyword_llm"
    tools: list[str] = []
    tool_rows: int = Field(600, ge=1)  # training rows each such tool may read

    @field_validator("tools")
    @classmethod
    def _loadable(cls, v: list[str]) -> list[str]:
        """A misspelt path fails when the configuration is read, not an hour into a run."""
        from metamodal.agent.extensions import load_factory

        for path in v:
            load_factory(path)
        return v

    @field_validator("llm_rank", mode="before")
    @classmethod
    def _on_off(cls, v):
        """``--set llm_rank=on`` arrives as YAML's boolean True."""
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v
    seeds: int = Field(3, ge=1)
    # a `metamodal align --mode heads` run over the zoo's features: the cross_modal tool reads
    # its shared space (else a CLIP image/text pair, when one was extracted)
    heads: str | None = None
    policy: MenuPolicyConfig = MenuPolicyConfig()

    @field_validator("heads")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        """Serve compares the run's heads with its own: both absolute."""
        return None if v is None else str(Path(v).resolve())


def wants_llm_rank(cfg: MMAConfig) -> bool:
    if cfg.llm_rank != "auto":
        return cfg.llm_rank == "on"
    import torch

    return torch.cuda.is_available()


def quick(cfg: MMAConfig) -> MMAConfig:
    """Minutes, not an hour: short zoo runs, fewer episodes and router rows."""
    return cfg.model_copy(
        update={
            "zoo_epochs": 15,
            "baselines": ["late_fusion", "margo", "impute_mean"],
            "fit_episodes": 150,
            "fit_fixed_users": 100,
            "select_episodes": 80,
            "select_fixed_users": 100,
            "select_llm_rows": 30,  # the LLM reads these twice (both adapters): most of its time
            "test_episodes": 40,
            "fixed_users": 100,
            "llm_rows": 40,
            "llm_rule_rows": 10,
            "llm_ablations": ["bc_only", "shuffled"],
        }
    )


def load_mma_config(overrides: list[str] | None = None, quick_mode: bool = False, seeds: int | None = None) -> MMAConfig:
    from metamodal.config import load_layered

    return load_layered(MMAConfig, overrides, quick if quick_mode else None, seeds)
