"""MMA's router as a network: the LLM reads a prompt and picks a letter; π(a|x) is read from its
next-token logits over the menu's letters in one forward pass (LlamaRec's verbalizer), so there
is no malformed completion and no sampling. ``listwise`` scoring (``llm_rank``, the sequential
scorer) reads candidates' letters the same way.

Only the top ``train_layers`` decoder layers carry LoRA weights; the frozen layers below run
once per prompt and their output is cached. This module holds the network, its configuration,
its loss and its loading, and imports nothing of Ray: training on Ray Train is
``menu_policy``'s, and a single-process trainer (a GPU benchmark) uses the same pieces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from metamodal.llm import DEFAULT_MODEL
from metamodal.progress import Progress

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # a route menu, or a listwise window of candidates
ANSWER = "\nroute:"
MEMO_ROWS = 50_000  # remembered read-outs (oldest dropped first): bounded memory in Serve
STATE_BYTES = 2 << 30  # the frozen trunk's outputs shared between an MMA run's adapters
TRUNK_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# in a prompt, the end of a prefix other prompts share: a read-out runs the prefix once and each
# prompt's rest against its keys and values (``MenuNet._read_shared``); the two parts are
# tokenised apart everywhere, training included, so both paths read the same tokens
SHARED = "\x1f"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 natively (a GPU that supports it; a CPU with AVX512-BF16
    or AMX): elsewhere bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def trunk_dtype_name(setting: str, device: torch.device) -> str:
    """``auto``: bf16 where it is native. The frozen trunk is most of a read-out's arithmetic
    (all layers below the LoRA ones); in bf16 it runs about twice as fast and, on CPU, gives a
    prompt the same state whatever shares its batch (see ``MenuNet._encode``)."""
    if setting != "auto":
        return setting
    return "bfloat16" if native_bf16(device) else "float32"


class TrunkStates:
    """The frozen layers' outputs per (base model, cut, prompt), shared by every adapter loaded
    in this process: two adapters of one base model (the warm start and the RL stage, MMA and
    its ablations) differ only above the cut, so a prompt's trunk runs once. Bounded in bytes,
    oldest dropped first."""

    def __init__(self, max_bytes: int = STATE_BYTES) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self._states: dict[tuple, torch.Tensor] = {}

    def get(self, key: tuple) -> torch.Tensor | None:
        return self._states.get(key)

    def put(self, key: tuple, state: torch.Tensor) -> None:
        if key in self._states:
            return
        self._states[key] = state
        self.bytes += state.numel() * state.element_size()
        while self.bytes > self.max_bytes and self._states:
            old = self._states.pop(next(iter(self._states)))
            self.bytes -= old.numel() * old.element_size()


SHARED_TRUNK = TrunkStates()


class MenuPolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_MODEL
    # the bottom ``depth`` decoder layers of the base model (None: all of them); a read-out costs
    # in proportion to it, and the digits of a statistics prompt need few (``llm_rank``, which
    # reads text, always keeps them all)
    depth: int | None = Field(None, ge=1)
    # top decoder layers (of those kept) with LoRA; the rest are cached (0: LoRA in all, none cached)
    train_layers: int = Field(4, ge=0)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_targets: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    bc_epochs: int = 6
    bc_lr: float = 1e-3
    rl_epochs: int = 2
    rl_lr: float = 1e-4
    beta: float = 0.05  # KL(π ‖ π_warm-start) in the RL stage
    batch: int = 16
    workers: int = 2
    use_gpu: bool | None = None
    zero_stage: int = 2
    seed: int = 0
    answer: str = ANSWER  # the cue the letter follows (``llm_rank`` uses its own)
    # the frozen trunk's arithmetic ("auto": bf16 where the worker's device has it natively);
    # the run records what it used, and every later read-out (Serve too) uses the same
    trunk_dtype: Literal["auto", "float32", "bfloat16"] = "auto"


def letter_ids(tok, n: int) -> list[int]:
    ids = [tok(" " + c, add_special_tokens=False).input_ids for c in LETTERS[:n]]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"the tokenizer splits a route letter: {ids}")
    return [i[0] for i in ids]


def _parts(net):
    """(embeddings, decoder layers, final norm, rotary, lm_head) of a (LoRA-wrapped) causal LM."""
    base = net.get_base_model() if hasattr(net, "get_base_model") else net
    m = base.model
    return m.embed_tokens, m.layers, m.norm, m.rotary_emb, base.lm_head


def _mask(lengths: torch.Tensor, t: int, dtype, prefix: int = 0) -> torch.Tensor:
    """Causal + key-padding additive mask [b, 1, t, prefix + t] for right-padded rows (a shared
    prefix's keys visible to every position)."""
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    keys = torch.arange(t)[None, :] < lengths[:, None]
    ok = causal[None] & keys[:, None, :]
    ok = torch.cat([torch.ones(len(lengths), t, prefix, dtype=torch.bool), ok], 2)
    return torch.zeros(ok.shape, dtype=dtype).masked_fill(~ok, torch.finfo(dtype).min)[:, None]


class PrefixKV:
    """What the attention layers take as ``past_key_values`` (they call only ``update``): first
    it records a shared prefix's keys and values per layer (batch 1), then it puts them,
    expanded to the batch, before each suffix's own."""

    def __init__(self) -> None:
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.recording = True

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, *_, **__):
        if self.recording:
            self.kv[layer_idx] = (k, v)
            return k, v
        pk, pv = self.kv[layer_idx]
        n = k.shape[0]
        return torch.cat([pk.expand(n, -1, -1, -1), k], 2), torch.cat([pv.expand(n, -1, -1, -1), v], 2)


def _run(net, h: torch.Tensor, lengths: torch.Tensor, layers, kv: PrefixKV | None = None,
         offset: int = 0) -> torch.Tensor:  # fmt: skip
    """``layers`` over right-padded rows; with ``kv`` replaying a prefix, the rows start at
    position ``offset`` (the prefix's length)."""
    _, _, _, rotary, _ = _parts(net)
    pos = torch.arange(offset, offset + h.shape[1], device=h.device)[None].expand(h.shape[0], -1)
    prefix = offset if kv is not None and not kv.recording else 0
    mask = _mask(lengths.cpu(), h.shape[1], h.dtype, prefix).to(h.device)
    pe = rotary(h, position_ids=pos)
    for layer in layers:
        h = layer(h, attention_mask=mask, position_embeddings=pe, position_ids=pos, past_key_values=kv)
        h = h[0] if isinstance(h, tuple) else h
    return h


def same_length_batches(ids: list[list[int]], batch: int):
    """(token length, row indices) batches of at most ``batch`` rows, each of one exact length:
    unpadded, so a row's result does not depend on what shares its batch."""
    by_len: dict[int, list[int]] = {}
    for i, t in enumerate(ids):
        by_len.setdefault(len(t), []).append(i)
    for n, rows in by_len.items():
        for s in range(0, len(rows), batch):
            yield n, rows[s : s + batch]


class MenuNet:
    """The LM split at ``cut``: frozen layers below (their output cached per prompt), LoRA
    layers above, and the letters' rows of the LM head as the verbalizer."""

    def __init__(self, net, tok, train_layers: int, n_letters: int = len(LETTERS),
                 answer: str = ANSWER, trunk: tuple[TrunkStates, str] | None = None,
                 trunk_dtype: str = "float32") -> None:  # fmt: skip
        """``trunk``: a shared store of frozen-trunk states and the base model it is keyed by
        (inference only: training's trunk is frozen too, but its states live in the worker)."""
        self.net, self.tok, self.answer = net, tok, answer
        self._memo: dict[tuple[str, int], np.ndarray] = {}
        n_layers = len(_parts(net)[1])
        self.cut = max(0, n_layers - train_layers) if train_layers > 0 else 0
        self.letters = letter_ids(tok, n_letters)
        self.trunk = trunk if train_layers > 0 else None  # 0: LoRA in every layer, no frozen trunk
        self.trunk_dtype = TRUNK_DTYPES[trunk_dtype] if train_layers > 0 else torch.float32
        for layer in _parts(net)[1][: self.cut]:
            layer.to(self.trunk_dtype)  # frozen: no LoRA below the cut

    @torch.no_grad()
    def encode(self, prompts: list[str], batch: int = 32) -> list[torch.Tensor]:
        if self.trunk is None:
            return self._encode(prompts, batch)
        store, base = self.trunk
        keys = {p: (base, self.cut, self.answer, str(self.trunk_dtype), p) for p in prompts}
        found = {p: st for p, k in keys.items() if (st := store.get(k)) is not None}
        todo = [p for p in keys if p not in found]
        for p, st in zip(todo, self._encode(todo, batch), strict=True):
            found[p] = st
            store.put(keys[p], st)
        return [found[p] for p in prompts]

    def _encode(self, prompts: list[str], batch: int) -> list[torch.Tensor]:
        """Trunk states, batched only with prompts of the same token length. Without padding, a
        prompt's state does not depend on what shares its batch (bf16 kernels on CPU are batch-
        and thread-invariant; a padded batch changes the attention's key blocks), so Serve's
        batches read a prompt exactly as the run did."""
        embed, layers, _, _, _ = _parts(self.net)
        dev = embed.weight.device
        ids = [self._ids(p) for p in prompts]
        out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        for n, chunk in same_length_batches(ids, batch):
            x = torch.tensor([ids[i] for i in chunk], device=dev)
            h = _run(self.net, embed(x).to(self.trunk_dtype), torch.full((len(chunk),), n), layers[: self.cut])
            for r, i in enumerate(chunk):
                out[i] = h[r].to("cpu", copy=True)  # not a view of the batch
        return out

    def logits(self, states: list[torch.Tensor], sizes: torch.Tensor) -> torch.Tensor:
        """Menu logits [b, letters] (letters past a row's menu size masked)."""
        _, layers, norm, _, lm_head = _parts(self.net)
        dev = lm_head.weight.device
        lengths = torch.tensor([len(s) for s in states])
        h = torch.zeros(len(states), int(lengths.max()), states[0].shape[-1], device=dev)
        for r, st in enumerate(states):
            h[r, : len(st)] = st.to(dev)
        h = _run(self.net, h, lengths, layers[self.cut :])
        return self._letters(h, lengths, sizes)

    def _letters(self, h: torch.Tensor, lengths: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """The letters' logits at each row's last token (letters past a row's menu masked)."""
        _, _, norm, _, lm_head = _parts(self.net)
        dev = h.device
        last = norm(h[torch.arange(len(h), device=dev), lengths.to(dev) - 1])
        out = last @ lm_head.weight[self.letters].T
        keep = torch.arange(out.shape[1], device=dev)[None] < sizes[:, None].to(dev)
        return out.masked_fill(~keep, -1e9)

    def _ids(self, prompt: str) -> list[int]:
        """A prompt's tokens with the answer cue; a shared prefix (``SHARED``) tokenised apart."""
        pre, sep, _ = prompt.rpartition(SHARED)
        return (self._plain(pre) if sep else []) + self._rest(prompt)

    def _rest(self, prompt: str) -> list[int]:
        """The tokens after a prompt's shared prefix (all of it without one), answer cue included."""
        return self._plain(prompt.rpartition(SHARED)[2] + self.answer)

    def _plain(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def _through(self, h: torch.Tensor, lengths: torch.Tensor, kv: PrefixKV, offset: int) -> torch.Tensor:
        """Every layer, the frozen ones in the trunk's arithmetic as ``encode`` runs them."""
        _, layers, _, _, _ = _parts(self.net)
        h = _run(self.net, h.to(self.trunk_dtype), lengths, layers[: self.cut], kv, offset)
        return _run(self.net, h.float(), lengths, layers[self.cut :], kv, offset)

    @torch.no_grad()
    def _read_shared(self, prefix: str, keys: list[tuple[str, int]], batch: int) -> list[np.ndarray]:
        """π for prompts that share ``prefix``: the prefix runs once, each prompt's rest against
        its keys and values, batched only with rests of the same token length (so a prompt's
        read does not depend on what shares its batch, as in ``_encode``)."""
        embed = _parts(self.net)[0]
        dev = embed.weight.device
        pre = self._plain(prefix)
        kv = PrefixKV()
        self._through(embed(torch.tensor([pre], device=dev)), torch.tensor([len(pre)]), kv, 0)
        kv.recording = False
        rest = [self._rest(p) for p, _ in keys]  # the prefix once, above
        out: list[np.ndarray] = [np.zeros(0)] * len(keys)
        for n, chunk in same_length_batches(rest, batch):
            x = torch.tensor([rest[i] for i in chunk], device=dev)
            h = self._through(embed(x), torch.full((len(chunk),), n), kv, len(pre))
            lg = self._letters(h, torch.full((len(chunk),), n), torch.tensor([keys[i][1] for i in chunk]))
            for i, row in zip(chunk, torch.softmax(lg.float(), -1).cpu().numpy(), strict=True):
                out[i] = row
        return out

    def forget_read_outs(self) -> None:
        """Drop the remembered read-outs: the next read of any prompt runs the model again."""
        self._memo.clear()

    def _tokens(self, key: tuple[str, int]) -> int:
        return len(self._ids(key[0]))

    @torch.no_grad()
    def probs(self, prompts: list[str], sizes: list[int], batch: int = 32, what: str = "the router") -> np.ndarray:
        """π per prompt. Inference only (the weights are fixed once loaded): each distinct
        (prompt, size) is read once and remembered (bounded), so repeated prompts — the
        bucket-only prompt, the shuffled-statistics ablation, a client's retries — cost nothing."""
        self.net.eval()
        keys = list(zip(prompts, sizes, strict=True))
        todo = list(dict.fromkeys(k for k in keys if k not in self._memo))
        shared: dict[str, list[tuple[str, int]]] = {}
        for k in todo:
            if SHARED in k[0]:
                shared.setdefault(k[0].rpartition(SHARED)[0], []).append(k)
        # ordered by token length: the trunk batches only prompts of one exact length, so this
        # fills its batches (a char-length order left them at one to three prompts) and leaves
        # little padding for the layers above the cut
        todo = sorted((k for k in todo if SHARED not in k[0]), key=self._tokens)
        progress = Progress(f"{what} reads prompts", len(shared) + len(todo))
        for i, (prefix, group) in enumerate(shared.items()):
            progress.update(i)
            self._memo.update(zip(group, self._read_shared(prefix, group, batch), strict=True))
        for s in range(0, len(todo), batch):
            progress.update(len(shared) + s)
            chunk = todo[s : s + batch]
            st = self.encode([p for p, _ in chunk], batch)
            lg = self.logits(st, torch.tensor([n for _, n in chunk]))
            for k, row in zip(chunk, torch.softmax(lg.float(), -1).cpu().numpy(), strict=True):
                self._memo[k] = row
        out = np.stack([self._memo[k] for k in keys]) if keys else np.zeros((0, len(self.letters)))
        while len(self._memo) > MEMO_ROWS:
            self._memo.pop(next(iter(self._memo)))
        return out


def build_menu_net(cfg: MenuPolicyConfig, n_letters: int, trunk_dtype: str) -> MenuNet:
    from metamodal.llm import load_model, load_tokenizer, with_lora

    tok = load_tokenizer(cfg.model)
    net = with_lora(load_model(cfg.model, depth=cfg.depth), cfg.lora_r, cfg.lora_alpha, cfg.train_layers,
                    cfg.lora_targets)  # fmt: skip
    return MenuNet(net, tok, cfg.train_layers, n_letters, cfg.answer, trunk_dtype=trunk_dtype)


def unwrapped(mn: MenuNet):
    """The LoRA model itself: under DeepSpeed the net is its engine, which saves differently."""
    return mn.net.module if hasattr(mn.net, "module") else mn.net


def stage_loss(mn: MenuNet, states: list[torch.Tensor], rows: dict, b: np.ndarray, stage: str,
               beta: float) -> torch.Tensor:  # fmt: skip
    """One batch's loss: ``bc`` (cross-entropy to the soft targets ``q``) or ``rl`` (the exact
    expected reward over the menu, scaled, + β·KL to the warm start ``ref``)."""
    from metamodal.agent.menus import expected_reward_loss

    lg = mn.logits([states[i] for i in b], torch.as_tensor(rows["sizes"][b])).float()
    if stage == "bc":
        return -(torch.as_tensor(rows["q"][b], device=lg.device) * torch.log_softmax(lg, -1)).sum(-1).mean()
    r = torch.as_tensor(rows["rewards"][b], device=lg.device) * rows["reward_scale"]
    return expected_reward_loss(lg, r, torch.as_tensor(rows["ref"][b], device=lg.device), beta)


def warm_reference(mn: MenuNet, states: list[torch.Tensor], sizes: np.ndarray) -> np.ndarray:
    """The warm start's π on every row: the RL stage's KL reference."""
    mn.net.eval()
    with torch.no_grad():
        ref = [torch.softmax(mn.logits(states[s : s + 64], torch.as_tensor(sizes[s : s + 64])).float(), -1)
               for s in range(0, len(states), 64)]  # fmt: skip
    return torch.cat(ref).cpu().numpy()


def layers_read(summary: dict) -> str:
    """How many of its base LM's decoder layers a trained policy reads (``all`` by default)."""
    return str(summary.get("depth") or "all")


def load_menu_policy(summary: dict, adapter: str | Path | None = None, share_trunk: bool = False) -> MenuNet:
    """``share_trunk``: keep the frozen trunk's states in this process's shared store, for a
    run that reads the same prompts through several adapters (not Serve: its prompts rarely
    repeat, and its memory stays bounded per request)."""
    from peft import PeftModel

    from metamodal.llm import load_model, load_tokenizer

    tok = load_tokenizer(summary["base_model"])
    net = PeftModel.from_pretrained(
        load_model(summary["base_model"], depth=summary.get("depth")), str(adapter or summary["adapter"])
    )
    net.eval()
    return MenuNet(net, tok, summary["train_layers"], summary["letters"],
                   summary.get("answer", ANSWER),
                   (SHARED_TRUNK, str(summary["base_model"])) if share_trunk else None,
                   summary.get("trunk_dtype", "float32"))  # fmt: skip
