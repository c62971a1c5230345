"""``shine estimate``: requests, tokens, dollars and the binding rate limit of an LLM run, before any call.

    shine estimate --masked artifacts/run/masked.parquet --backend openai --tier 1
    shine estimate --input ../shared/data/charades_cg/charades_cg_train.jsonl --backend anthropic --tier 2 --json

With ``--masked`` the prompts are the ones the run will send (same templates, same vocabulary subset size);
with ``--input`` (annotations, no spaCy needed) each query stands in for its masked levels, which is close
because masking keeps the length. Completion tokens are estimated from the sentences the answer must contain.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.backends.base import FillRequest, MaskedLevel
from pipeline.errors import ConfigError
from pipeline.llm.config import LLMConfig, llm_backend_names, parse_llm_config
from pipeline.llm.pricing import cost_usd, estimate_message_tokens, estimate_tokens, model_info
from pipeline.llm.prompts import load_prompts, render_messages

__all__ = ["register", "estimate", "Estimate"]

_TYPES = ("verb", "noun", "adj", "prep", "adv")


@dataclass
class Estimate:
    """The numbers ``shine estimate`` prints."""

    backend: str
    model: str
    tier: int
    queries: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    usd: float
    usd_batch: float | None
    binding_limit: str
    wall_time_floor_s: float
    limits: dict[str, int]
    prices_taken: str


def _requests_from_masked(path: Path) -> list[FillRequest]:
    import pandas as pd
    import pyarrow as pa

    from pipeline.errors import DataError

    if not path.is_file():
        raise DataError(f"--masked {path} does not exist; pass the masked.parquet of a build-negatives run")
    columns = ["qid", "level", "ratio", "masked_query", "masked_positions", "original_words"]
    try:
        frame = pd.read_parquet(path, columns=columns)
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        # one line instead of an Arrow traceback: not Parquet at all, or a table without these columns
        raise DataError(f"--masked {path} is not a masked.parquet with columns {columns} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    out: list[FillRequest] = []
    for qid, group in frame.groupby("qid", sort=False):
        levels = tuple(MaskedLevel(int(r.level), float(r.ratio), str(r.masked_query), tuple(str(r.masked_query).split()),
                                   tuple(int(p) for p in r.masked_positions), tuple(r.original_words),
                                   ("noun",) * len(r.masked_positions)) for r in group.itertuples())
        out.append(FillRequest(str(qid), " ".join(levels[0].original_words), (), levels))
    return out


def _requests_from_annotations(path: Path) -> list[FillRequest]:
    from pipeline.load import read_queries

    # the loader's own checks: non-UTF-8 bytes, array lines, duplicate keys, JSONL saved as .json
    queries = read_queries(path)
    # one mask per few words, at three nested ratios: enough to size the prompt and the answer
    out = []
    for qid, query in queries:
        words = query.split()
        levels = tuple(MaskedLevel(k, r, query, tuple(words), tuple(range(max(1, int(len(words) * r)))),
                                   tuple(words[: max(1, int(len(words) * r))]), ("noun",) * max(1, int(len(words) * r)))
                       for k, r in ((1, 0.25), (2, 0.5), (3, 0.75)))
        out.append(FillRequest(qid, query, tuple(words), levels))
    return out


def estimate(reqs: list[FillRequest], name: str, cfg: LLMConfig, tier: int) -> Estimate:
    """Sum prompt and answer tokens over ``reqs`` and find the limit that bounds the wall time."""
    prompts = load_prompts(cfg.prompt_version, cfg.prompt_dir)
    per_level = cfg.layout == "per_level"
    vocab = {p: ("wordwd",) * cfg.vocab_size for p in _TYPES[:3]}  # an average D word is ~6 characters
    n_req = p_tok = c_tok = 0
    for req in reqs:
        groups = [(lv,) for lv in req.levels] if per_level else [tuple(req.levels)]
        for levels in groups:
            msgs = render_messages(prompts, req, levels, vocab, per_level)
            n_req += 1
            p_tok += estimate_message_tokens(msgs)
            c_tok += sum(estimate_tokens(lv.masked_query) + 4 for lv in levels) + 2
    info = model_info(cfg.provider, cfg.model_name, cfg.usd_per_mtok_in, cfg.usd_per_mtok_out)
    lim = info.tiers.get(tier)
    if lim is None:
        raise ConfigError(f"no published tier {tier} for {cfg.provider}:{cfg.model_name}; "
                          f"known: {sorted(info.tiers)} (see pipeline/llm/limits/{cfg.provider}.yaml)")
    floors = {"requests_per_minute": n_req / lim.rpm * 60 if lim.rpm else 0.0,
              "tokens_per_minute": (p_tok + c_tok) / lim.tpm * 60 if lim.tpm else 0.0,
              "input_tokens_per_minute": p_tok / lim.itpm * 60 if lim.itpm else 0.0,
              "output_tokens_per_minute": c_tok / lim.otpm * 60 if lim.otpm else 0.0,
              "requests_per_day": (math.ceil(n_req / lim.rpd) - 1) * 86400.0 if lim.rpd else 0.0}
    binding = max(floors, key=lambda k: floors[k])
    batch = cfg.provider in {"openai", "anthropic"}
    return Estimate(name, cfg.model_name, tier, len(reqs), n_req, p_tok, c_tok,
                    round(cost_usd(info, p_tok, c_tok, batch=False), 4),
                    round(cost_usd(info, p_tok, c_tok, batch=True), 4) if batch else None,
                    binding, round(floors[binding], 1),
                    {k: v for k, v in vars(lim).items() if v}, info.taken)


def _run(args: argparse.Namespace) -> int:
    from pipeline.llm.secrets import move_secrets_to_env
    from shine.configs import load_yaml, parse_overrides

    options: dict[str, Any] = {}
    if args.config:
        options.update(load_yaml(args.config).get("backend", {}).get("options", {}))
    # a secret on the command line is taken as for build-negatives (moved into a variable, only its name kept)
    options.update(move_secrets_to_env(parse_overrides(args.set)).get("backend", {}).get("options", {}))
    cfg = parse_llm_config(args.backend, args.model or "", 0, options)
    if args.masked:
        reqs = _requests_from_masked(Path(args.masked))
    elif args.input:
        reqs = _requests_from_annotations(Path(args.input))
    else:
        raise ConfigError("give --masked masked.parquet or --input ANNOTATIONS")
    est = estimate(reqs, args.backend, cfg, args.tier)
    if args.json:
        print(json.dumps(vars(est)))
        return 0
    hours = est.wall_time_floor_s / 3600
    lines = [
        f"backend {est.backend}  model {est.model}  tier {est.tier}",
        f"queries {est.queries:,}  requests {est.requests:,} (+ re-asks)",
        f"tokens  in ~{est.prompt_tokens:,}  out ~{est.completion_tokens:,}",
        f"cost    ~${est.usd:,.2f}" + (f"   batch API ~${est.usd_batch:,.2f}" if est.usd_batch is not None else ""),
        f"binding limit {est.binding_limit} -> wall-time floor {est.wall_time_floor_s:,.0f} s ({hours:.2f} h)",
        f"limits {est.limits}",
        f"published limits and prices as of {est.prices_taken}: check your provider's pages before relying on them",
    ]
    print("\n".join(lines))
    return 0


def register(subparsers: Any) -> None:
    """Add ``estimate`` to the ``shine`` command."""
    p = subparsers.add_parser("estimate", help="requests, tokens, dollars and wall-time floor of an LLM run",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--masked", help="masked.parquet of a run (exact prompts)")
    src.add_argument("--input", help="annotation file (Moment-DETR JSONL or VISA JSON)")
    p.add_argument("--backend", required=True, choices=llm_backend_names())
    p.add_argument("--model", default="", help="model snapshot (default: the provider's pinned default)")
    p.add_argument("--tier", type=int, default=1, help="published usage tier (1 or 2)")
    p.add_argument("--config", help="YAML config (its backend.options are used)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override, e.g. backend.options.layout=per_level")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="shine")
    register(parser.add_subparsers())
    ns = parser.parse_args(["estimate", *sys.argv[1:]])
    sys.exit(ns.func(ns))
