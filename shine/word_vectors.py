"""The synthetic data set's word vectors: one seeded random unit vector per token (NumPy only, no torch).

Both halves use this one copy: ``trainer/synthetic.py`` builds the synthetic set's video and text features from it,
and the pipeline's ``word-vectors`` text encoder (``pipeline/text/encoders.py``) reproduces the set's text side
with it, so negatives built by the pipeline live in the same feature space as the set's positives.

Contract (the synthetic evidence depends on it bit for bit; ``tests/test_word_vectors.py`` pins values):

- tokens: ``sentence.lower().replace(".", " .").split()`` (``.`` is a token; no special tokens);
- token ``w`` -> ``np.random.default_rng([salt, zlib.crc32(w.encode("utf-8"))]).standard_normal(dim)``, divided by
  its L2 norm, cast to float32. The synthetic set of seed ``s`` uses ``salt = 2 * s + 1`` for text
  (:func:`text_salt`) and ``2 * s`` for video (:func:`video_salt`).
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["tokenize", "word_vector", "text_salt", "video_salt", "WordVectors"]


def tokenize(sentence: str) -> list[str]:
    """Lower-case words plus the final period, the tokens the word vectors are built on.

    >>> tokenize("A person holds the cup.")
    ['a', 'person', 'holds', 'the', 'cup', '.']
    """
    return sentence.lower().replace(".", " .").split()


def word_vector(word: str, dim: int, salt: int) -> np.ndarray:
    """The float32 unit vector of ``word`` in ``dim`` dimensions under ``salt`` (see the module docstring)."""
    rng = np.random.default_rng([salt, zlib.crc32(word.encode("utf-8"))])
    v = rng.standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def text_salt(seed: int) -> int:
    """The salt of the synthetic set of seed ``seed``'s text features."""
    return 2 * seed + 1


def video_salt(seed: int) -> int:
    """The salt of the synthetic set of seed ``seed``'s video features."""
    return 2 * seed


class WordVectors:
    """Cached :func:`word_vector` lookups for one (dim, salt): a sentence -> its (n_tokens, dim) float32 rows."""

    def __init__(self, dim: int, salt: int) -> None:
        self.dim, self.salt = int(dim), int(salt)
        self._cache: dict[str, np.ndarray] = {}

    def vector(self, token: str) -> np.ndarray:
        """The vector of one token (computed once, then cached: a vocabulary repeats across sentences)."""
        v = self._cache.get(token)
        if v is None:
            v = self._cache[token] = word_vector(token, self.dim, self.salt)
        return v

    def sentence(self, sentence: str) -> np.ndarray:
        """The ``(n_tokens, dim)`` rows of ``sentence``; a sentence without tokens raises ValueError."""
        tokens = tokenize(sentence)
        if not tokens:
            raise ValueError(f"word-vectors: text {sentence!r} has no tokens")
        return np.stack([self.vector(t) for t in tokens])
