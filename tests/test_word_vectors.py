"""The one word-vector encoder (shine/word_vectors.py) stays bit-identical to the vectors the synthetic evidence used."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from shine.word_vectors import WordVectors, text_salt, tokenize, video_salt, word_vector

# Computed BEFORE the refactor with the two old copies (trainer.synthetic._word_vector and
# pipeline.text_encoders.WordVectorEncoder) and hard-coded here: they must never change.
PINNED = [
    ("holds", 64, 1, [0.0554143488407135, 0.021812615916132927, 0.16696204245090485],
     "919ba9da7572c30a4a49156fbd540fcd1f860375795099cfc70f7e5db9e1f43a"),
    ("cup", 32, 3, [0.053903985768556595, 0.23497414588928223, -0.242001473903656],
     "d6825bf426de0bd71ebd164a0ffa0921dbec786dc956892c3a84534e11064c60"),
    (".", 64, 1, [-0.09464821219444275, 0.08765620738267899, -0.0059969681315124035],
     "f27db94823cdeda0bb8b73b3ed10b6d512470917f16e803eac2145c905fa22ec"),
    ("café", 16, 11, [0.16556665301322937, -0.5145285129547119, -0.24102380871772766],
     "bcab5265b24bf94ad563a135e5467a7b020abb87d956e6dd338d357ffb870b3e"),
]
# (seed, dim, sentence) -> sha256 of the (n_tokens, dim) float32 rows, from the old pipeline encoder
PINNED_SENTENCES = [
    (0, 64, "A person quickly holds the cup.", (7, 64), "eaed08f911cc6ebe23ba4bcb8b61c4481daf4fcb5cf1011d01768e50f7f324bb"),
    (5, 32, "Novel zorbs.", (3, 32), "1b8c842aa04ed93e6df20340358b012f1da76d03c29ce28ac4d362ac60eae300"),
]


@pytest.mark.parametrize(("word", "dim", "salt", "head", "sha"), PINNED)
def test_word_vector_is_pinned(word: str, dim: int, salt: int, head: list[float], sha: str) -> None:
    v = word_vector(word, dim, salt)
    assert v.dtype == np.float32 and v.shape == (dim,)
    assert [float(x) for x in v[:3]] == head
    assert hashlib.sha256(v.tobytes()).hexdigest() == sha


@pytest.mark.parametrize(("seed", "dim", "sentence", "shape", "sha"), PINNED_SENTENCES)
def test_sentence_rows_are_pinned(seed: int, dim: int, sentence: str, shape: tuple[int, int], sha: str) -> None:
    rows = WordVectors(dim, text_salt(seed)).sentence(sentence)
    assert rows.shape == shape
    assert hashlib.sha256(rows.tobytes()).hexdigest() == sha


def test_both_halves_use_the_shared_vectors() -> None:
    from pipeline.text.encoders import WordVectorEncoder
    from trainer.synthetic import tokenize as synthetic_tokenize

    enc = WordVectorEncoder(seed=5, dim=32)
    (rows,) = enc.encode(["Novel zorbs."])
    assert np.array_equal(rows, WordVectors(32, text_salt(5)).sentence("Novel zorbs."))
    assert synthetic_tokenize is tokenize and tokenize("The cup.") == ["the", "cup", "."]
    assert (text_salt(3), video_salt(3)) == (7, 6)


def test_a_text_without_tokens_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="has no tokens"):
        WordVectors(8, 1).sentence("   ")
