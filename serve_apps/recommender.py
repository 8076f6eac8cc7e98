"""The recommender app: ``serve run serve_apps.recommender:app`` (the demo's MMA run, or the one
``METAMODAL_MMA_DIR`` names), ``serve run serve_apps.recommender:app_builder mma_dir=DIR
reranker=rulerouter``, or ``serve deploy serve_apps/config.yaml``. Thin: the deployments are
``metamodal.serving.deployments``."""

from __future__ import annotations

import os

from metamodal.serving.config import ServeConfig
from metamodal.serving.deployments import build_app

DEFAULT_MMA_DIR = "runs/demo/mma"


def app_builder(args: dict):
    """Serve's application builder: ``args`` come from ``serve run ... key=value`` or the
    ``args`` of a Serve config file. ``mma_dir`` (an ``metamodal mma run`` output) supplies the
    retriever, policy and RuleRouter-Fuse; without it, give ``retriever_run`` (+ ``model_run``)."""
    args = dict(args)
    replicas = int(args.pop("replicas", 1))
    if "retriever_run" not in args:
        args.setdefault("mma_dir", os.environ.get("METAMODAL_MMA_DIR", DEFAULT_MMA_DIR))
    return build_app(ServeConfig(**args), replicas=replicas)


def __getattr__(name: str):
    # `app` is built on first access, so importing this module never needs the run on disk
    if name == "app":
        return app_builder({})
    raise AttributeError(name)
