"""The ``import`` backend: train with negatives you already have (the authors' released GPT-3.5 file, another run).

``--backend import --set backend.options.path=FILE`` reads FILE once and answers each of this run's masked
queries by qid and level from it:

* a ``.jsonl`` / ``.json`` file in the released format (one line per query: ``qid``, ``query``, ``vid``, ...,
  ``masked_queries`` and ``recomposed_queries``, one string per level), or
* a ``negatives.parquet`` of another run (our own schema).

Every sentence is validated like an LLM answer (``pipeline.llm.validate.check_level``: unmasked words kept,
every mask filled, masked words changed, not the original, levels distinct). A qid or level missing from the
file, or a sentence that fails a check, becomes an invalid row whose reasons say why; nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import tables
from pipeline.backends.base import FillRequest, FillResponse, LevelFill, detokenize
from pipeline.errors import ConfigError, DataError

__all__ = ["ImportBackend", "read_negatives_file"]

#: words a mask may take in an imported sentence (LLMs write "picks up" for "takes")
MAX_WORDS = 3


def read_negatives_file(path: Path) -> dict[str, dict[int, tuple[str, str]]]:
    """qid -> level -> (the file's masked query, its negative), from a released-format JSONL or a negatives.parquet."""
    if not path.is_file():
        raise ConfigError(f"backend.options.path: {path} does not exist; pass a released-format .jsonl or a "
                          "negatives.parquet (--set backend.options.path=FILE)")
    out: dict[str, dict[int, tuple[str, str]]] = {}
    if path.suffix == ".parquet":
        df = tables.read_table(path, tables.NEGATIVES, columns=["qid", "level", "masked_query", "negative", "valid"])
        for qid, level, masked, negative, valid in zip(df["qid"], df["level"], df["masked_query"], df["negative"], df["valid"]):
            if valid:  # an invalid row of the other run is no answer: this run reports the row as missing
                out.setdefault(str(qid), {})[int(level)] = (masked, negative)
        return out
    from pipeline.quality.source import read_released

    for obj in read_released(path):
        levels = out.setdefault(str(obj["qid"]), {})
        for level, (masked, negative) in enumerate(zip(obj["masked_queries"], obj["recomposed_queries"]), start=1):
            levels[level] = (masked, negative)
    return out


class ImportBackend:
    """Answer masked queries from an existing negatives file, validated like an LLM answer."""

    name = "import"
    prompt_version = "none"

    def __init__(self, answers: dict[str, dict[int, tuple[str, str]]], source: Path, sha256: str = "") -> None:
        self.answers, self.source, self.sha256 = answers, source, sha256
        self.model = source.name
        self._found = self._missing = self._invalid = 0

    @classmethod
    def from_options(cls, options: dict[str, Any], workdir: Path | None = None) -> ImportBackend:
        """Build from ``backend.options`` (``path``: the file; relative paths are taken from the working directory)."""
        opts = dict(options or {})
        path = opts.pop("path", None)
        if not path:
            raise ConfigError("the import backend needs a file: --set backend.options.path=FILE "
                              "(a released-format .jsonl or a negatives.parquet)")
        if opts:
            raise ConfigError(f"the import backend takes only the option path, got {sorted(opts)}")
        file = Path(str(path)).expanduser()
        if workdir is not None and file.resolve() == (Path(workdir) / "negatives.parquet").resolve():
            raise ConfigError(f"backend.options.path {file} is this run's own negatives.parquet; import from another file")
        try:
            answers = read_negatives_file(file)
        except DataError as exc:
            raise ConfigError(f"backend.options.path: {exc}") from exc
        return cls(answers, file, tables.sha256_file(file))

    def _fill_one(self, req: FillRequest) -> FillResponse:
        from pipeline.llm.validate import check_level, cross_check

        original = detokenize(req.tokens)
        found = self.answers.get(req.qid)
        fills: dict[int, LevelFill] = {}
        for lv in req.levels:
            if found is None or lv.level not in found:
                what = f"qid {req.qid!r}" if found is None else f"level {lv.level} of qid {req.qid!r}"
                fills[lv.level] = LevelFill(lv.level, "", (), False, (f"{what} is not in {self.source.name}",))
                self._missing += 1
                continue
            masked, sentence = found[lv.level]
            fill = check_level(lv, sentence, original, MAX_WORDS)
            if not fill.valid and " ".join(masked.split()) != lv.masked_query:
                reason = f"{self.source.name} masked it as {masked!r}, this run as {lv.masked_query!r}"
                fill = LevelFill(fill.level, fill.negative, fill.filled_words, False, fill.invalid_reasons + (reason,))
            fills[lv.level] = fill
        checked = cross_check(fills)
        self._found += sum(1 for f in checked.values() if f.valid)
        self._invalid += sum(1 for f in checked.values() if not f.valid and f.negative)
        return FillResponse(qid=req.qid, fills=tuple(checked[lv.level] for lv in req.levels), backend=self.name,
                            model=self.model, prompt_version=self.prompt_version)

    async def complete(self, req: FillRequest) -> FillResponse:
        """Answer one request from the file."""
        return self._fill_one(req)

    async def fill_batch(self, requests: Sequence[FillRequest]) -> list[FillResponse]:
        """Answer many requests (a lookup each)."""
        return [self._fill_one(r) for r in requests]

    def stats(self) -> dict[str, object]:
        """Provenance for the manifest: the file, its sha256 and how many rows it answered."""
        return {"backend": self.name, "path": str(self.source), "sha256": self.sha256, "queries_in_file": len(self.answers),
                "valid_rows": self._found, "missing_rows": self._missing, "invalid_rows": self._invalid,
                "calls": 0, "cost_usd": 0.0}
