"""``metamodal mma run`` configuration: typed, unknown keys rejected, ``--quick`` a preset."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from metamodal.agent.train_policy import PolicyTrainConfig

BASELINES = (
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
    zoo_overrides: list[str] = []  # passed to every zoo run, e.g. "train.epochs=50"
    cold_item_frac: float = 0.1  # items whose training interactions the zoo never sees
    pool_size: int = 20
    fixed_k: int = 50
    cold_history: int = 2
    fit_episodes: int = 200  # per task, from the validation users the policy trains on
    select_episodes: int = 100  # per task, from the other validation users (λ, RuleRouter)
    test_episodes: int = 200  # per task
    fixed_users: int = 400
    bc_steps: int = 600  # balanced draws whose prompts the warm start learns
    seeds: int = Field(3, ge=1)
    policy: PolicyTrainConfig = PolicyTrainConfig()


def quick(cfg: MMAConfig) -> MMAConfig:
    """Minutes, not an hour: short zoo runs, fewer episodes, a few GRPO steps."""
    return cfg.model_copy(
        update={
            "zoo_overrides": ["train.epochs=15", *cfg.zoo_overrides],
            "baselines": ["late_fusion", "margo", "impute_mean"],
            "fit_episodes": 40,
            "select_episodes": 30,
            "test_episodes": 40,
            "fixed_users": 80,
            "bc_steps": 150,
            "policy": cfg.policy.model_copy(update={"grpo_steps": 3, "bc_epochs": 4}),
        }
    )


def load_mma_config(
    overrides: list[str] | None = None, quick_mode: bool = False, seeds: int | None = None
) -> MMAConfig:
    """Defaults ← ``key.path=value`` overrides (validated: unknown keys fail naming them) ←
    the ``--quick`` preset ← ``--seeds``."""
    from metamodal.train.config import merge_layers, parse_override

    raw: dict = {}
    for o in overrides or []:
        raw = merge_layers(raw, parse_override(o))
    cfg = MMAConfig(**raw)
    if quick_mode:
        cfg = quick(cfg)
    if seeds is not None:
        cfg = cfg.model_copy(update={"seeds": seeds})
    return cfg
