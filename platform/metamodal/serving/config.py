"""What a deployed recommender loads: checkpoint directories written by the training jobs, never
anything sent in a request. An ``mma_dir`` (a ``metamodal mma run`` output) brings its
retriever, its trained policy and its RuleRouter-Fuse."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metamodal.rundir import MMARun
from metamodal.storage import sync_down

RERANKERS = ("mma", "rulerouter", "model", "none")


class ServeConfig(BaseModel):
    """What a deployed recommender serves: the ``metamodal serve`` flags and the Serve app's
    arguments. Give ``mma_dir`` (its retriever comes with it) or a ``retriever_run``."""

    model_config = ConfigDict(extra="forbid")

    mma_dir: str | None = Field(None, description="a `metamodal mma run` output (its retriever, policy and RuleRouter-Fuse)")  # fmt: skip
    retriever_run: str | None = Field(None, description="a zoo run directory (default: the mma run's retriever)")  # fmt: skip
    reranker: Literal["mma", "rulerouter", "model", "none"] = Field("mma", description="what reorders the retriever's pool")  # fmt: skip
    mma_seed: int = Field(0, ge=0, description="which seed's policy and RuleRouter-Fuse to serve")
    model_run: str | None = Field(None, description="reranker model: a fusion model's zoo run (late_fusion, margo, ...)")  # fmt: skip
    pool_size: int = Field(50, ge=1, le=1000, description="candidates the retriever hands the reranker")  # fmt: skip
    index_kind: Literal["flat", "ivf", "hnsw"] = Field("flat", description="faiss index of the retriever")  # fmt: skip
    exclude_seen: bool = Field(True, description="drop a known user's training items from the answer")  # fmt: skip
    heads: str | None = Field(None, description="a `metamodal align --mode heads` run: image queries search every item, text-only ones too, in its shared space (default: the mma run's)")  # fmt: skip
    torch_threads: int = Field(2, ge=1, le=256, description="torch threads in each model replica (query encoders, LLM reranker): Ray gives an actor with a fraction of a CPU one, and an LLM read-out on one thread takes about twice as long")  # fmt: skip
    request_timeout_s: float = Field(10.0, gt=0, le=300, description="every request's deadline end to end (a client may ask for less with X-Timeout-Ms)")  # fmt: skip

    @model_validator(mode="after")
    def _needs(self) -> ServeConfig:
        if self.reranker in ("mma", "rulerouter") and not self.mma_dir:
            raise ValueError(f"reranker '{self.reranker}' needs mma_dir")
        if self.reranker == "model" and not self.model_run:
            raise ValueError("reranker 'model' needs model_run (a zoo run directory)")
        if self.mma_dir:
            self._heads_of_the_run()
        if self.retriever_run is None:
            if not self.mma_dir:
                raise ValueError("give mma_dir (an mma run) or retriever_run (a zoo run)")
            self.retriever_run = str(MMARun(self.mma_dir).retriever().path)
        return self

    def _heads_of_the_run(self) -> None:
        """The MMA run's evidence was built over its heads' space: a reranker that reads other
        heads would see tools the policy never trained on."""
        sync_down(self.mma_dir)  # its config names the retriever and the heads
        ran = MMARun(self.mma_dir).config().get("heads")
        if self.heads is None:
            self.heads = ran
        elif self.reranker in ("mma", "rulerouter") and ran != str(Path(self.heads).resolve()):
            raise ValueError(f"heads: the mma run {self.mma_dir} was trained with heads {ran}, not {self.heads}")

    def resolved(self) -> ServeConfig:
        """Absolute paths: replicas may start in another working directory."""
        upd = {
            k: str(Path(v).resolve())
            for k in ("retriever_run", "mma_dir", "model_run", "heads")
            if (v := getattr(self, k))
        }
        return self.model_copy(update=upd)
