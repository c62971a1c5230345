"""``shine train | evaluate | predict | make-synthetic``: the trainer's verbs.

Every config field is also an option (``--optim.lr 2e-4``, ``--data.test '{a: a.jsonl}'``), generated from the
dataclasses with the help taken from each field's comment, so there is no second schema; ``--set key=value``
does the same. Values are parsed as YAML. torch is imported only when a verb runs, so ``shine --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from shine.configs import add_config_options, field_comments, option_metavar, option_overrides, to_dict

__all__ = ["register", "config_options"]

_SECTIONS = ("data", "model", "matcher", "loss", "optim", "shine")
_TOP_LEVEL = ("progress", "plot_queries")


def config_options(parser: argparse.ArgumentParser) -> None:
    """Add one ``--section.field`` option per field of :class:`TrainConfig` (and its top-level knobs), generated
    the way the pipeline's options are (``shine.configs``), with each field's comment and default as help."""
    from trainer.config import TrainConfig

    defaults = TrainConfig()
    add_config_options(parser, defaults, _SECTIONS)
    hints, comments = typing.get_type_hints(TrainConfig), field_comments(TrainConfig)
    top = parser.add_argument_group("run")
    for name in _TOP_LEVEL:
        help_text = f"{comments.get(name, '')} [{to_dict(getattr(defaults, name))!r}]".strip()
        top.add_argument(f"--{name}", dest=f"cfg:{name}", metavar=option_metavar(hints[name]),
                         help=help_text.replace("%", "%%"))


def _cmd_train(args: argparse.Namespace) -> int:
    from shine.configs import parse_overrides
    from trainer.checkpoint import load_checkpoint
    from trainer.config import config_from_dict, load_config
    from trainer.runner import train

    from shine.paths import check_out_dir

    overrides = option_overrides(args, args.set or [])
    if args.out:
        check_out_dir(args.out)  # a file or a read-only place: one line before any work
        overrides.append(f"out_dir={args.out}")
    if args.resume and not (args.preset or args.config):
        # continue with the run's own config; options given now (e.g. more epochs) apply on top
        out_dir = args.out or "artifacts/train"
        saved = load_checkpoint(Path(out_dir) / "checkpoints" / "last.pt")["config"]
        from shine.configs import deep_merge

        cfg = config_from_dict(deep_merge(saved, parse_overrides(overrides)))
    else:
        cfg = load_config(args.preset, args.config, overrides)
    result = train(cfg, resume=args.resume)
    if not result.metrics:  # a DDP rank other than 0: rank 0 reports
        return 0
    print((result.out_dir / "metrics.md").read_text(encoding="utf-8"))
    print(f"run directory: {result.out_dir} (best epoch {result.best['epoch']}, {result.global_step} steps)")
    return 0


def _parse_splits(items: list[str] | None) -> dict[str, str]:
    from trainer.errors import ConfigError

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--split {item!r} must look like NAME=FILE.jsonl")
        name, path = item.split("=", 1)
        out[name.strip()] = path.strip()
    return out


def _checkpoint_path(args: argparse.Namespace) -> Path:
    path = Path(args.checkpoint)
    return path / "checkpoints" / "best.pt" if path.is_dir() else path


def _cmd_evaluate_predictions(args: argparse.Namespace) -> int:
    import json

    from shine.files import atomic_path
    from trainer.submission_eval import evaluate_files

    def report(line: str) -> None:
        print(line, file=sys.stderr)

    result = evaluate_files(args.predictions, args.gt, match_number=not args.subset, layout=args.layout,
                            clip_length=args.clip_length, report=report)
    text = json.dumps(result, indent=4)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
        print(f"metrics: {Path(args.json).resolve()}", file=sys.stderr)
    print(text)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from shine.configs import parse_overrides
    from trainer.errors import ConfigError
    from trainer.runner import evaluate_checkpoint

    if args.predictions or args.gt:
        if args.checkpoint or not (args.predictions and args.gt):
            raise ConfigError("give --predictions PRED.jsonl with --gt GT.jsonl (a submission file), "
                              "or --checkpoint (a trained run), not both")
        return _cmd_evaluate_predictions(args)
    if not args.checkpoint:
        raise ConfigError("shine evaluate needs --checkpoint RUN, or --predictions PRED.jsonl --gt GT.jsonl")
    ckpt = _checkpoint_path(args)
    default = ckpt.parent.parent / "eval" if ckpt.parent.name == "checkpoints" else ckpt.parent / f"{ckpt.stem}_eval"
    out = Path(args.out) if args.out else default
    evaluate_checkpoint(ckpt, out, splits=_parse_splits(args.split), overrides=parse_overrides(args.set or []))
    print((out / "metrics.md").read_text(encoding="utf-8"))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from shine.configs import parse_overrides
    from trainer.runner import predict_checkpoint

    overrides = parse_overrides(args.set or [])
    path = predict_checkpoint(_checkpoint_path(args), args.annotations, args.out, overrides=overrides)
    print(f"predictions: {path}")
    return 0


def _cmd_make_synthetic(args: argparse.Namespace) -> int:
    from shine.paths import check_out_dir
    from trainer.synthetic import make_synthetic

    check_out_dir(args.out)
    meta = make_synthetic(args.out, seed=args.seed, size=args.size, text_format=args.text_format,
                          mode=args.mode, verb_weight=args.verb_weight, overwrite=args.overwrite)
    counts = ", ".join(f"{k} {v}" for k, v in meta["queries"].items())
    print(f"synthetic data set in {args.out}: {counts} queries")
    for split, levels in meta["chance"].items():
        rw, bp = levels["random_window"], levels["best_prior"]
        print(f"  chance {split}: R1@0.5 random window {rw['R1@0.5']:.2f}, best fixed prior {bp['R1@0.5']:.2f}")
    print(f"train on it: shine train --preset synthetic --set data.root={args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the trainer's verbs to the ``shine`` parser."""
    from trainer.config import PRESETS

    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("train", help="train Moment-DETR / QD-DETR, select on val, evaluate on test splits",
                              description="Train, select the best epoch on the validation split carved from train, "
                              "evaluate it on every test split. Layers: preset < --config < options/--set.",
                              formatter_class=fmt)
    p.add_argument("--preset", choices=PRESETS, help="dataset preset (base < model < dataset YAML layers)")
    p.add_argument("--config", metavar="YAML", help="YAML file with any subset of the config")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. optim.lr=2e-4 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoints/last.pt bit for bit")
    p.add_argument("--out", metavar="DIR", help="run directory (= out_dir)")
    config_options(p)
    p.set_defaults(func=_cmd_train)

    p = subparsers.add_parser("evaluate", help="evaluate a checkpoint on test splits, or a submission file "
                              "(QD-DETR's standalone evaluation)",
                              description="Either --checkpoint (metrics + predictions of a trained run) or "
                              "--predictions with --gt: every number of QD-DETR's standalone_eval/eval.py for a "
                              "Moment-DETR submission JSONL, same layout, keys and rounding (docs/evaluation.md).")
    p.add_argument("--checkpoint", metavar="PATH", help="a .pt file, or a run directory (uses best.pt)")
    p.add_argument("--predictions", metavar="PRED.jsonl",
                   help="submission: {qid, pred_relevant_windows: [[start, end, score], ...], pred_saliency_scores?}")
    p.add_argument("--gt", metavar="GT.jsonl", help="ground truth: {qid, relevant_windows, ...} per line")
    p.add_argument("--json", metavar="OUT", help="also write the metrics JSON here")
    p.add_argument("--layout", choices=("shine", "qd-detr"), default="shine",
                   help="shine: QD-DETR's keys plus SHINE's mIoU keys; qd-detr: exactly QD-DETR's keys")
    p.add_argument("--subset", action="store_true",
                   help="evaluate the qids both files share (official match_number=False) instead of failing")
    p.add_argument("--clip-length", type=float, default=2.0, metavar="S",
                   help="clip length of relevant_clip_ids for HL metrics [2.0, QVHighlights]")
    p.add_argument("--split", action="append", metavar="NAME=FILE",
                   help="split to evaluate (repeatable; default: the config's test splits)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: RUN/eval)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override data/optim settings, e.g. data.root=DIR")
    p.set_defaults(func=_cmd_evaluate)

    p = subparsers.add_parser("predict", help="write Moment-DETR submission JSONL for an annotation file")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="a .pt file, or a run directory (uses best.pt)")
    p.add_argument("--annotations", required=True, metavar="JSONL", help="queries to ground (windows optional)")
    p.add_argument("--out", required=True, metavar="JSONL", help="where to write the predictions")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override data/optim settings")
    p.set_defaults(func=_cmd_predict)

    p = subparsers.add_parser("make-synthetic", help="generate the synthetic compositional data set")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", choices=("small", "default"), default="default")
    p.add_argument("--mode", choices=("bag-of-words", "noun-shortcut"), default="bag-of-words",
                   help="bag-of-words: training videos hold same-verb and same-noun distractors; noun-shortcut: "
                   "training videos never repeat a noun, so nothing in them forces a model to read the verb "
                   "(trainer/synthetic.py)")
    p.add_argument("--verb-weight", type=float, metavar="W",
                   help="weight of the verb's video vector (default 1; the noun's is 1)")
    p.add_argument("--text-format", choices=("store", "official", "both"), default="store",
                   help="text features as a text store, official {qid}.npz files, or both")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=_cmd_make_synthetic)


if __name__ == "__main__":  # pragma: no cover
    from shine.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
