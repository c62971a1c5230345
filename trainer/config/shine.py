"""SHINE's settings (a torch-free module, so configs load without importing torch)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from trainer.config.check import check
from trainer.errors import ConfigError

__all__ = ["ShineConfig", "NegativesChoice", "choose_negatives"]


@dataclass(frozen=True)
class ShineConfig:
    """SHINE's switches; defaults are the paper's. Each ablation switch changes only the loss it names.

    ``margins`` m_0..m_3 of L_fr: one value for all constraints, or at least ``levels + 1`` values (the first
    ``levels + 1`` are used). ``levels``: hard negatives used, hn1..hn{levels}; the chain always ends with the
    easy negative. ``fine_terms``: 1-based constraints of L_fr to keep (paper Tab. 4); empty keeps all.
    ``invalid_negatives``: what the data side does with a negative whose generation failed (``valid=false``
    in negatives.parquet): ``skip`` drops that sample's ranking constraints that involve it;
    ``random_fallback`` substitutes the random backend's negative for it (then skips if none exists).
    ``hn_text_features``: the text store holding variants hn1..hn3 (empty: ``data.text_features``); pointing
    it at a store built from the random backend or an LLM backend is the paper's Tab. 5 ablation. A negative is
    invalid when the store's ``validity.parquet`` sidecar (written by ``shine encode-text``) says so or the
    store lacks it.
    ``hn_fraction``: share of each training batch whose hard negatives are scored (1 = the paper). Below 1 a
    seeded random ceil(hn_fraction * B) rows per batch enter L_fr's hard-negative constraints (a random-subset
    estimate of the same per-constraint batch means; with 1/3 the extra encoder pass shrinks from 3B to B
    pairs); L_cr and the easy negative always use the whole batch. Not in the paper: a compute knob, off by
    default.
    """

    enabled: bool = False
    alpha: float = 1.0  # weight of L_cr
    beta: float = 1.0  # weight of L_fr
    h1: float = 1.0  # L_intra margin
    h2: float = 2.0  # L_inter margin
    q: int = 8  # top-k = max(1, floor(T+ / q))
    margins: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    ranking: Literal["red", "abd"] = "red"  # relative (paper) or absolute (supplementary Eq. 1)
    levels: int = 3  # hard negatives used, 1..3
    use_coarse: bool = True
    use_fine: bool = True
    use_intra: bool = True  # L_intra inside L_cr
    use_inter: bool = True  # L_inter inside L_cr
    fine_terms: tuple[int, ...] = ()
    replace_saliency: bool = True  # drop the base margin saliency loss (L_intra replaces it)
    invalid_negatives: Literal["skip", "random_fallback"] = "skip"
    easy_negative: Literal["batch_roll"] = "batch_roll"  # the next sample's query (official)
    hn_text_features: str = ""
    #: with invalid_negatives="random_fallback": the store of a random-backend run over the same queries
    fallback_text_features: str = ""
    hn_fraction: float = 1.0
    #: synthetic data: keep the generator's oracle hn1..hn3 even when a pipeline store sits beside the data
    oracle_negatives: bool = False

    def __post_init__(self) -> None:
        w = "shine"
        for name in ("hn_text_features", "fallback_text_features"):
            # a store path is the user's, read from where they run the command (not from data.root, which is
            # the data set's): made absolute here, so config.yaml and the manifest say which store was read
            value = getattr(self, name)
            if value and "$" not in value and not Path(value).expanduser().is_absolute():
                object.__setattr__(self, name, os.path.abspath(Path(value).expanduser()))
        for name in ("alpha", "beta", "h1", "h2"):
            value = getattr(self, name)
            check(isinstance(value, (int, float)) and value >= 0, f"{w}.{name}", "a number >= 0", value)
        check(isinstance(self.q, int) and self.q >= 1, f"{w}.q", "an integer >= 1", self.q)
        check(isinstance(self.levels, int) and 1 <= self.levels <= 3, f"{w}.levels", "1, 2 or 3", self.levels)
        check(len(self.margins) == 1 or len(self.margins) >= self.levels + 1, f"{w}.margins",
               f"1 or at least levels + 1 = {self.levels + 1} values", self.margins)
        check(all(m >= 0 for m in self.margins), f"{w}.margins", "values >= 0", self.margins)
        check(self.ranking in ("red", "abd"), f"{w}.ranking", "'red' or 'abd'", self.ranking)
        check(not self.use_coarse or self.use_intra or self.use_inter, f"{w}.use_intra/use_inter",
               "at least one on while use_coarse is on", (self.use_intra, self.use_inter))
        check(all(isinstance(t, int) and 1 <= t <= self.levels + 1 for t in self.fine_terms)
               and len(set(self.fine_terms)) == len(self.fine_terms), f"{w}.fine_terms",
               f"distinct constraint numbers in 1..{self.levels + 1}", self.fine_terms)
        check(self.invalid_negatives in ("skip", "random_fallback"), f"{w}.invalid_negatives",
               "'skip' or 'random_fallback'", self.invalid_negatives)
        check(isinstance(self.hn_fraction, (int, float)) and 0 < self.hn_fraction <= 1, f"{w}.hn_fraction",
               "a number in (0, 1]", self.hn_fraction)
        check(self.easy_negative == "batch_roll", f"{w}.easy_negative", "'batch_roll'", self.easy_negative)

    def term_switches(self) -> tuple[bool, ...] | None:
        """Per-constraint switches of L_fr for ``levels`` (None: all on)."""
        if not self.fine_terms:
            return None
        return tuple(i + 1 in self.fine_terms for i in range(self.levels + 1))


@dataclass(frozen=True)
class NegativesChoice:
    """Where a SHINE run's hn1..hn3 come from: ``source`` is ``pipeline`` (a ``shine encode-text`` store),
    ``generator oracle`` (the synthetic set's own, built from its ground truth) or ``text features store``;
    ``store`` is its absolute path; ``found`` says the pipeline store was found beside the data, not given;
    ``fingerprint`` is the store's own (``store.json``; empty for a store without one): a resumed run and a
    reader of its manifest can tell whether the negatives under that path are still the ones it trained on."""

    source: str
    store: str
    found: bool = False
    fingerprint: str = ""

    def describe(self) -> str:
        """``pipeline store /abs/path (found beside the data)``, for report headers and logs."""
        return f"{self.source} store {self.store}" + (" (found beside the data)" if self.found else "")


def _store_meta_file(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _store_meta(path: Path) -> dict[str, Any] | None:
    return _store_meta_file(path / "store.json")


def _encoder_name(meta: dict[str, Any]) -> str:
    enc = meta.get("encoder", "")
    return str(enc.get("encoder", "")) if isinstance(enc, dict) else str(enc)


def choose_negatives(shine: ShineConfig, text_features: Path, *, label: str) -> tuple[ShineConfig, NegativesChoice | None]:
    """Resolve and check the hard-negative store of a run before any data is loaded.

    ``text_features`` is the run's ``data.text_features`` (resolved), ``label`` names the preset or data set in
    messages. With ``shine.hn_text_features`` empty and the generator's synthetic store as text features, a
    pipeline store built for that data (``negatives/text_features/word-vectors`` in ``data.root`` or beside it, the
    ``shine experiment`` layout) replaces the generator's oracle negatives unless ``shine.oracle_negatives``. Raises ConfigError, one line, when the
    store is missing (naming ``shine encode-text``) or its dimension differs from the text features'.
    """
    if not shine.enabled:
        return shine, None
    main = _store_meta(text_features)
    main_dim = int(main["dim"]) if main and "dim" in main else None
    if shine.hn_text_features:
        store = Path(shine.hn_text_features)
        meta = _store_meta(store)
        if meta is None and not (store.is_dir() and any(store.glob("*.npz"))):
            raise ConfigError(f"shine.hn_text_features: no text store at {store} (a relative path is read from the "
                              f"current directory, {Path.cwd()}); build one with `shine encode-text --run RUN` "
                              "(it writes RUN/text_features/ENCODER) and pass that directory")
        choice = NegativesChoice("pipeline" if meta and "stage" in meta else "text features", str(store))
    else:
        choice = NegativesChoice("text features", str(text_features))
        meta = main
        if main is not None and _encoder_name(main).startswith("synthetic-"):
            choice = NegativesChoice("generator oracle", str(text_features))
            root = text_features.parent
            for base in () if shine.oracle_negatives else (root, root.parent):
                cand = base / "negatives" / "text_features" / "word-vectors"
                cand_meta = _store_meta(cand)
                if cand_meta is not None and cand_meta.get("dim") == main_dim:
                    shine, meta = replace(shine, hn_text_features=str(cand)), cand_meta
                    choice = NegativesChoice("pipeline", str(cand), found=True)
                    break
    hn_dim = int(meta["dim"]) if meta and "dim" in meta else None
    if main_dim is not None and hn_dim is not None and hn_dim != main_dim:
        synthetic = _store_meta_file(text_features.parent / "synthetic.json")
        seed = synthetic.get("seed", "SEED") if synthetic else "SEED"
        raise ConfigError(f"shine.hn_text_features: {choice.store} holds {hn_dim}-d {_encoder_name(meta or {}) or '?'} "
                          f"features but {label}'s text features ({text_features}) are {main_dim}-d; encode the "
                          "negatives with the encoder of the text features (synthetic data: `shine encode-text "
                          f"--encoder word-vectors --encoder-seed {seed} --dim {main_dim}`)")
    return shine, replace(choice, fingerprint=str((meta or {}).get("fingerprint") or ""))
