"""What a deployed recommender loads: checkpoint directories written by the training jobs, never
anything sent in a request. ``from_mma_dir`` reads an ``metamodal mma run`` output (its
retriever, its trained policy and its RuleRouter-Fuse)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metamodal.rundir import MMARun

RERANKERS = ("mma", "rulerouter", "model", "none")


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retriever_run: str  # a zoo run directory (model.pt + config.json + split)
    reranker: Literal["mma", "rulerouter", "model", "none"] = "mma"
    mma_dir: str | None = None  # for mma / rulerouter: a `metamodal mma run` output
    mma_seed: int = 0  # which seed's policy and RuleRouter-Fuse to serve
    model_run: str | None = None  # for model: a fusion model's zoo run (late_fusion, margo, ...)
    pool_size: int = Field(50, ge=1, le=1000)  # candidates the retriever hands the reranker
    index_kind: Literal["flat", "ivf", "hnsw"] = "flat"
    exclude_seen: bool = True  # drop a known user's training items from the answer
    # every request's deadline end to end (a client may ask for less with X-Timeout-Ms)
    request_timeout_s: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _needs(self) -> ServeConfig:
        if self.reranker in ("mma", "rulerouter") and not self.mma_dir:
            raise ValueError(f"reranker '{self.reranker}' needs mma_dir")
        if self.reranker == "model" and not self.model_run:
            raise ValueError("reranker 'model' needs model_run (a zoo run directory)")
        return self

    def resolved(self) -> ServeConfig:
        """Absolute paths: replicas may start in another working directory."""
        upd = {
            k: str(Path(v).resolve())
            for k in ("retriever_run", "mma_dir", "model_run")
            if (v := getattr(self, k))
        }
        return self.model_copy(update=upd)

    @classmethod
    def from_mma_dir(cls, mma_dir: str | Path, **kw) -> ServeConfig:
        run = MMARun(mma_dir)
        return cls(retriever_run=str(run.retriever().path), mma_dir=str(run.path), **kw)
