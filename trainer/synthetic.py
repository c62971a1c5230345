"""A synthetic compositional grounding data set, written in the real on-disk formats.

Built the way Charades-CG is split:

- ``train`` / ``test_trivial``: verb-noun pairs from the training pairs;
- ``novel_composition``: a held-out verb-noun pair whose verb and noun both occur in training, just never
  together;
- ``novel_word``: the query contains a verb or noun that never occurs in training.

Every video holds three events placed without overlap. A query's event shares its verb with one
distractor and its noun with another (``holds the cup`` next to ``holds the book`` and ``washes the cup``),
so grounding needs the composition, not one word. Sentences are real English ("a person quickly holds
the red cup in the kitchen.": subject, optional adverb, verb, article, optional adjective, noun, optional
prepositional phrase), so the negatives pipeline can POS-tag them.

Features: clip ``t`` of a video is ``noise + 0.5 * scene + sum of the primitive vectors of the event
covering t`` (verb and noun at full weight, adjective and adverb at half), with one fixed random unit
vector per word on the video side and another, independent one on the text side (token-level text
features: one vector per token, ``.`` included). A model must learn the text-to-video mapping per word;
novel words have vectors it never saw. Everything is derived from ``seed``.

Modes (``MODES``; the test splits are built the same way in both):

- ``bag-of-words`` (default): as above. Training videos already hold a same-verb and a same-noun
  distractor next to every queried event, so the base saliency loss sees verb- and noun-swapped clips in
  the video itself and composition is learnable without textual hard negatives.
- ``noun-shortcut``: the three events of a *training* video have three different nouns. In training the noun
  alone finds the event (a shortcut we expect real data to offer, not measured), so nothing in the videos forces
  a model to read the verb; the test videos still hold a
  same-noun distractor, which a noun-only model confuses with the target. A verb-swapped hard negative
  (hn1: same noun, other verb) is exactly the training signal this mode lacks.

``verb_weight`` (default 1) scales the verb's video vector in either mode, for studies of subtle actions.

Text-feature contract: the word vectors of :mod:`shine.word_vectors` (tokens ``tokenize(sentence)``; token ``w``
is ``np.random.default_rng([2 * seed + 1, zlib.crc32(w.encode("utf-8"))]).standard_normal(text_dim)`` divided by its
L2 norm, as float32), the one copy the pipeline's ``word-vectors`` encoder uses too. ``shine encode-text --encoder word-vectors --encoder-seed SEED --dim TEXT_DIM``
over a build-negatives run of ``train.jsonl`` therefore writes ``pos`` rows identical to ``text_store``'s, and
hard negatives in the same space (tests/pipeline/test_text_features.py checks it).

Output directory::

    train.jsonl test_trivial.jsonl novel_composition.jsonl novel_word.jsonl   Moment-DETR JSONL
    video_features/{vid}.npy       (T, video_dim) float32, clip_len 0.5 s
    text_store/                    trainer.data.text_store format, variants pos, hn1, hn2, hn3
    text_features/{qid}.npz        official layout (last_hidden_state), when text_format is official/both
    chance.json                    chance levels per split (trainer.chance), read by the runner
    synthetic.json                 seed, size, vocabulary, held-out pairs and words, counts
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shine.files import follow_umask
from shine.word_vectors import WordVectors, text_salt, tokenize, video_salt
from trainer.chance import chance_levels
from trainer.data.annotations import Annotation, write_annotations
from trainer.data.text_store import TextStoreWriter
from trainer.errors import ConfigError, DataError

__all__ = ["SyntheticSize", "SyntheticMode", "SIZES", "MODES", "CLIP_LEN", "SPLITS", "make_synthetic", "tokenize"]

CLIP_LEN = 0.5
SPLITS: tuple[str, ...] = ("train", "test_trivial", "novel_composition", "novel_word")
SUBJECTS = ("person", "a person", "the person", "a man", "a woman")
VERBS = ("holds", "takes", "carries", "drops", "throws", "washes", "cleans", "grabs", "moves", "fixes", "lifts", "wipes")
NOUNS = ("book", "cup", "bag", "towel", "phone", "laptop", "box", "shoe", "pillow", "blanket", "broom", "plate",
         "bottle", "camera")
NOVEL_VERBS = ("folds", "shakes")
NOVEL_NOUNS = ("guitar", "umbrella", "jacket")
ADJECTIVES = ("red", "small", "old", "blue", "heavy")
ADVERBS = ("quickly", "slowly", "carefully")
PLACES = ("in the kitchen", "on the bed", "near the table", "in the hallway", "at the desk")


@dataclass(frozen=True)
class SyntheticSize:
    """Videos per split, clips per video and feature sizes."""

    train_videos: int
    test_videos: int
    composition_videos: int
    word_videos: int
    min_clips: int
    max_clips: int
    video_dim: int
    text_dim: int
    noise: float = 0.7  # norm of the per-clip noise vector; primitives have norm 1


SIZES: dict[str, SyntheticSize] = {
    "small": SyntheticSize(60, 12, 24, 16, 16, 32, 32, 32),
    "default": SyntheticSize(500, 100, 200, 120, 24, 48, 64, 64),
}


@dataclass(frozen=True)
class SyntheticMode:
    """How much the training videos alone teach composition (see the module docstring)."""

    verb_weight: float = 1.0  # weight of the verb's video vector; the noun's is 1
    distinct_train_nouns: bool = False  # training videos: no two events share a noun (no same-noun distractor)


MODES: dict[str, SyntheticMode] = {
    "bag-of-words": SyntheticMode(),
    "noun-shortcut": SyntheticMode(distinct_train_nouns=True),
}


@dataclass(frozen=True)
class _Event:
    verb: str
    noun: str
    adj: str
    adv: str


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _sentence(ev: _Event, rng: np.random.Generator, place: str) -> str:
    subject = SUBJECTS[rng.integers(len(SUBJECTS))]
    obj = f"{ev.adj} {ev.noun}" if ev.adj else ev.noun
    det = "the" if rng.random() < 0.6 else _article(obj)
    adv = f"{ev.adv} " if ev.adv else ""
    loc = f" {place}" if rng.random() < 0.4 else ""
    return f"{subject} {adv}{ev.verb} {det} {obj}{loc}."


def _split_pairs(rng: np.random.Generator, fraction: float = 0.25) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train pairs, held-out pairs); every word keeps >= 4 training partners."""
    pairs = [(v, n) for v in VERBS for n in NOUNS]
    order = rng.permutation(len(pairs))
    verb_deg = {v: len(NOUNS) for v in VERBS}
    noun_deg = {n: len(VERBS) for n in NOUNS}
    held: set[tuple[str, str]] = set()
    for i in order:
        v, n = pairs[i]
        if len(held) >= fraction * len(pairs):
            break
        if verb_deg[v] > 4 and noun_deg[n] > 4:
            held.add((v, n))
            verb_deg[v] -= 1
            noun_deg[n] -= 1
    return [p for p in pairs if p not in held], sorted(held)


class _Builder:
    def __init__(self, out: Path, seed: int, size: SyntheticSize, text_format: str, mode: SyntheticMode) -> None:
        self.out, self.seed, self.size, self.text_format, self.mode = out, seed, size, text_format, mode
        self.rng = np.random.default_rng(seed)
        self.video_words = WordVectors(size.video_dim, video_salt(seed))
        self.text_words = WordVectors(size.text_dim, text_salt(seed))
        (out / "video_features").mkdir(parents=True)
        if text_format in ("official", "both"):
            (out / "text_features").mkdir()
        self.store = TextStoreWriter(out / "text_store", encoder=f"synthetic-word-vectors-seed{seed}", dim=size.text_dim,
                                     dtype="float32") if text_format in ("store", "both") else None

    def vvec(self, word: str) -> np.ndarray:
        return self.video_words.vector(word)

    def text_features(self, sentence: str) -> np.ndarray:
        return self.text_words.sentence(sentence)

    def decorate(self, verb: str, noun: str) -> _Event:
        adj = ADJECTIVES[self.rng.integers(len(ADJECTIVES))] if self.rng.random() < 0.4 else ""
        adv = ADVERBS[self.rng.integers(len(ADVERBS))] if self.rng.random() < 0.3 else ""
        return _Event(verb, noun, adj, adv)

    def negatives(self, ev: _Event, place: str) -> list[str]:
        """hn1 swaps the verb, hn2 also the noun, hn3 also the adjective or adverb (SHINE's mask order)."""
        verb = VERBS[(VERBS.index(ev.verb) + 1 + self.rng.integers(len(VERBS) - 1)) % len(VERBS)] if ev.verb in VERBS \
            else VERBS[self.rng.integers(len(VERBS))]
        noun = NOUNS[(NOUNS.index(ev.noun) + 1 + self.rng.integers(len(NOUNS) - 1)) % len(NOUNS)] if ev.noun in NOUNS \
            else NOUNS[self.rng.integers(len(NOUNS))]
        adj = ADJECTIVES[self.rng.integers(len(ADJECTIVES))] if ev.adj or not ev.adv else ""
        adv = ADVERBS[self.rng.integers(len(ADVERBS))] if ev.adv else ""
        hn = [_Event(verb, ev.noun, ev.adj, ev.adv), _Event(verb, noun, ev.adj, ev.adv), _Event(verb, noun, adj, adv)]
        return [_sentence(e, self.rng, place) for e in hn]

    def video(self, vid: str, events: list[_Event], tag: str, query_events: list[int]) -> list[Annotation]:
        size, rng = self.size, self.rng
        n_clips = int(rng.integers(size.min_clips, size.max_clips + 1))
        lengths = rng.integers(max(2, int(0.12 * n_clips)), int(0.3 * n_clips) + 1, size=len(events))
        cuts = np.sort(rng.integers(0, n_clips - lengths.sum() + 1, size=len(events)))
        starts = cuts + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        place = PLACES[rng.integers(len(PLACES))]
        noise = rng.standard_normal((n_clips, size.video_dim)) * (size.noise / np.sqrt(size.video_dim))
        feats = noise + 0.5 * self.vvec(place)
        for ev, st, ln in zip(events, starts, lengths):
            signal = self.mode.verb_weight * self.vvec(ev.verb) + self.vvec(ev.noun)
            signal = signal + 0.5 * (self.vvec(ev.adj) if ev.adj else 0) + 0.5 * (self.vvec(ev.adv) if ev.adv else 0)
            feats[st : st + ln] += rng.uniform(0.8, 1.0, size=(ln, 1)) * signal
        np.save(self.out / "video_features" / f"{vid}.npy", feats.astype(np.float32))
        duration = round(n_clips * CLIP_LEN - float(rng.uniform(0.0, 0.8 * CLIP_LEN)), 2)
        anns = []
        for i, k in enumerate(query_events):
            ev = events[k]
            query = _sentence(ev, rng, place)
            window = (float(starts[k] * CLIP_LEN), min(float((starts[k] + lengths[k]) * CLIP_LEN), duration))
            qid = f"{vid}_{tag}_{i}"
            anns.append(Annotation(qid, query, vid, duration, (window,)))
            sentences = [query, *self.negatives(ev, place)]
            if self.store is not None:
                for variant, sent in zip(("pos", "hn1", "hn2", "hn3"), sentences):
                    self.store.add(qid, variant, self.text_features(sent))
            if self.text_format in ("official", "both"):
                np.savez(self.out / "text_features" / f"{qid}.npz", last_hidden_state=self.text_features(query))
                for j, sent in enumerate(sentences[1:]):
                    np.savez(self.out / "text_features" / f"{qid}_recomposed_gpt_{j}.npz",
                             last_hidden_state=self.text_features(sent))
        return anns


def _partner(rng: np.random.Generator, pairs: set[tuple[str, str]], verb: str, noun: str, share: str) -> tuple[str, str]:
    """A pair of ``pairs`` with the same verb (``share="verb"``) or noun as (verb, noun) and a different other
    word; any pair of ``pairs`` when none shares it."""
    if share == "verb":
        options = sorted(p for p in pairs if p[0] == verb and p[1] != noun)
    else:
        options = sorted(p for p in pairs if p[1] == noun and p[0] != verb)
    options = options or sorted(pairs)
    return options[int(rng.integers(len(options)))]


def _other_nouns(rng: np.random.Generator, pairs: list[tuple[str, str]], noun: str, k: int) -> list[tuple[str, str]]:
    """``k`` pairs of ``pairs`` whose nouns differ from ``noun`` and from each other."""
    chosen: list[tuple[str, str]] = []
    used = {noun}
    for i in rng.permutation(len(pairs)):
        if pairs[i][1] not in used:
            chosen.append(pairs[i])
            used.add(pairs[i][1])
            if len(chosen) == k:
                return chosen
    raise DataError(f"fewer than {k + 1} nouns among the training pairs")


def make_synthetic(out: str | Path, seed: int = 0, size: str = "default", *, text_format: str = "store",
                   mode: str = "bag-of-words", verb_weight: float | None = None, overwrite: bool = False) -> dict:
    """Generate the data set under ``out`` and return its ``synthetic.json`` content.

    ``mode`` is a key of :data:`MODES`: ``bag-of-words`` (default) or ``noun-shortcut`` (see the module docstring);
    ``verb_weight`` overrides the mode's weight of the verb's video vector.
    """
    if size not in SIZES:
        raise ConfigError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    settings = MODES[mode]
    if verb_weight is not None:
        if not verb_weight >= 0:
            raise ConfigError(f"verb_weight must be >= 0, got {verb_weight!r}")
        settings = SyntheticMode(float(verb_weight), settings.distinct_train_nouns)
    if text_format not in ("store", "official", "both"):
        raise ConfigError(f"text_format must be 'store', 'official' or 'both', got {text_format!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} exists and is not empty; pass --overwrite or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    follow_umask(tmp)  # mkdtemp makes 0700; the data set is shared like any directory
    try:
        meta = _build(tmp, seed, SIZES[size], text_format, settings)
        meta["size"] = size
        meta["mode"] = {"name": mode, **asdict(settings)}
        (tmp / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _build(tmp: Path, seed: int, size: SyntheticSize, text_format: str, mode: SyntheticMode) -> dict:
    b = _Builder(tmp, seed, size, text_format, mode)
    rng = b.rng
    train_pairs, held_pairs = _split_pairs(rng)
    train_set = set(train_pairs)
    splits: dict[str, list[Annotation]] = {s: [] for s in SPLITS}
    seen_events: list[_Event] = []
    tags = {"train": "train", "test_trivial": "test", "novel_composition": "composition", "novel_word": "word"}
    counts = {"train": size.train_videos, "test_trivial": size.test_videos,
              "novel_composition": size.composition_videos, "novel_word": size.word_videos}
    prefixes = {"train": "tr", "test_trivial": "tt", "novel_composition": "nc", "novel_word": "nw"}
    for split in SPLITS:
        if split != "train":
            # Charades-CG's test-trivial pairs are pairs seen in training: use those the train split really has
            train_set = {(e.verb, e.noun) for e in seen_events}
            train_pairs = sorted(train_set)
        for i in range(counts[split]):
            if split in ("train", "test_trivial"):
                verb, noun = train_pairs[int(rng.integers(len(train_pairs)))]
            elif split == "novel_composition":
                verb, noun = held_pairs[int(rng.integers(len(held_pairs)))]
            elif rng.random() < 0.5:
                verb, noun = NOVEL_VERBS[int(rng.integers(len(NOVEL_VERBS)))], NOUNS[int(rng.integers(len(NOUNS)))]
            else:
                verb, noun = VERBS[int(rng.integers(len(VERBS)))], NOVEL_NOUNS[int(rng.integers(len(NOVEL_NOUNS)))]
            if split == "train" and mode.distinct_train_nouns:
                d1, d2 = _other_nouns(rng, train_pairs, noun, 2)
            else:
                any_pair = train_pairs[int(rng.integers(len(train_pairs)))]
                d1 = _partner(rng, train_set, verb, noun, "verb") if verb in VERBS else any_pair
                d2 = _partner(rng, train_set, verb, noun, "noun") if noun in NOUNS else any_pair
            events = [b.decorate(verb, noun), b.decorate(*d1), b.decorate(*d2)]
            perm = [int(k) for k in rng.permutation(3)]
            events = [events[k] for k in perm]
            if split == "train":
                seen_events += events
            target = perm.index(0)
            queried = [0, 1, 2] if split in ("train", "test_trivial") else [target]
            splits[split] += b.video(f"{prefixes[split]}{i:05d}", events, tags[split], queried)
    if b.store is not None:
        b.store.close()
    for split, anns in splits.items():
        write_annotations(tmp / f"{split}.jsonl", anns)
    tests = {s: splits[s] for s in SPLITS[1:]}
    chance = chance_levels(tests, splits["train"], CLIP_LEN)
    (tmp / "chance.json").write_text(json.dumps(chance, indent=2) + "\n", encoding="utf-8")
    return {
        "seed": seed,
        "clip_len": CLIP_LEN,
        "dims": asdict(size),
        "text_format": text_format,
        "queries": {s: len(a) for s, a in splits.items()},
        "videos": counts,
        "verbs": list(VERBS),
        "nouns": list(NOUNS),
        "novel_words": list(NOVEL_VERBS + NOVEL_NOUNS),
        "held_out_pairs": [list(p) for p in held_pairs],
        "chance": chance,
    }
