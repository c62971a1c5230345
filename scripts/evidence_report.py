"""The tables and the figure of ``scripts/evidence.py``: ``OUT/results.{md,csv,json}`` and ``OUT/results.png``.

:func:`collect` reads every finished run (``WORK/seed{S}/{variant}/metrics.json`` and ``train_log.jsonl``) into one
dict (mean ± sample std over seeds per variant, test split and metric, the chance rows, the negatives
diagnostics); :func:`write_tables` and :func:`write_figure` render it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

SPLITS = ("test_trivial", "novel_composition", "novel_word")
METRICS = ("R1@0.5", "R1@0.7", "mIoU")
LABELS = {"baseline": "QD-DETR", "shine-random": "QD-DETR + SHINE (pipeline, random backend)",
          "shine-oracle": "QD-DETR + SHINE (generator's oracle negatives)",
          "shine-no-hn": "control: SHINE without L_fr (no hard negative used)",
          "baseline-2x": "control: QD-DETR, 2x epochs (about SHINE's compute)",
          "shine-hn-third": "QD-DETR + SHINE, hard negatives of 1/3 of each batch (shine.hn_fraction=0.34)",
          "shine-lexical": "QD-DETR + SHINE (pipeline, lexical backend)"}


def collect(preps: list[dict], variants: list[str], work: Path) -> dict:
    """Every run of ``variants`` for the seeds of ``preps`` (from ``prepare_seed``) under ``work``, aggregated."""
    per_seed: dict[str, dict[str, dict[str, list[float]]]] = {v: {s: {m: [] for m in METRICS} for s in SPLITS}
                                                             for v in variants}
    chance: dict[str, dict[str, dict[str, list[float]]]] = {c: {s: {m: [] for m in METRICS} for s in SPLITS}
                                                           for c in ("random_window", "best_prior")}
    runs = []
    for prep in preps:
        for v in variants:
            out = work / f"seed{prep['seed']}" / v
            metrics = json.loads((out / "metrics.json").read_text())
            hist = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if line.strip()]
            last = hist[-1]["train"] if hist else {}
            runs.append({"seed": prep["seed"], "variant": v, "dir": str(out), "epochs": len(hist),
                         "best_epoch": _best_epoch(out),
                         "train_s": round(sum(h.get("train_s", 0.0) for h in hist), 1),
                         "last_epoch_losses": {k: round(float(x), 4) for k, x in last.items()},
                         "test": {s: {m: metrics[s]["model"][m] for m in METRICS} for s in SPLITS}})
            for s in SPLITS:
                for m in METRICS:
                    per_seed[v][s][m].append(float(metrics[s]["model"][m]))
                if v == variants[0]:
                    for c in chance:
                        for m in METRICS:
                            chance[c][s][m].append(float(metrics[s]["chance"][c][m]))

    def agg(vals: list[float]) -> dict:
        a = np.asarray(vals, dtype=float)
        return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "values": vals}

    return {"seeds": [p["seed"] for p in preps], "variants": variants, "splits": list(SPLITS),
            "metrics": list(METRICS),
            "results": {v: {s: {m: agg(per_seed[v][s][m]) for m in METRICS} for s in SPLITS} for v in variants},
            "chance": {c: {s: {m: agg(chance[c][s][m]) for m in METRICS} for s in SPLITS} for c in chance},
            "runs": runs,
            "negatives": {str(p["seed"]): p["negatives"] for p in preps},
            "negatives_by_backend": {b: {str(p["seed"]): p["negatives_by_backend"][b] for p in preps}
                                     for b in preps[0].get("negatives_by_backend", {"random": None})
                                     if all(b in p.get("negatives_by_backend", {}) for p in preps)},
            "invalid_negatives": {str(p["seed"]): p.get("invalid_negatives", {}) for p in preps},
            "pos_rows_identical": {str(p["seed"]): p["pos_rows_identical"] for p in preps}}


def _best_epoch(run_dir: Path) -> int | None:
    import re

    m = re.search(r"best epoch (\d+)", (run_dir / "metrics.md").read_text())
    return int(m.group(1)) if m else None


def _fmt(a: dict) -> str:
    return f"{a['mean']:.1f} ± {a['std']:.1f}"


def write_tables(res: dict, out: Path, command: str, seconds: float) -> None:
    """``out/results.md`` (tables), ``results.csv`` (one row per method, split and metric) and ``results.json``."""
    variants = res["variants"]
    rows = [(LABELS[v], res["results"][v]) for v in variants]
    rows += [("chance: random window", res["chance"]["random_window"]),
             ("chance: best fixed window (train prior)", res["chance"]["best_prior"])]
    head = "| method | " + " | ".join(f"{s} {m}" for s in SPLITS for m in METRICS) + " |"
    lines = [f"# SHINE on the synthetic compositional set, mode {res.get('mode', 'bag-of-words')} "
             f"({len(res['seeds'])} seeds: {res['seeds']})", "",
             f"Command: `{command}` ({seconds / 60:.1f} min). Mean ± sample std over seeds, metrics in %.", "",
             head, "|" + "---|" * (1 + len(SPLITS) * len(METRICS))]
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(r[s][m]) for s in SPLITS for m in METRICS) + " |")
    lines += ["", f"Differences to {variants[0]} (mean ± std of the per-seed differences):", "",
              "| variant | " + " | ".join(f"{s} {m}" for s in SPLITS for m in METRICS) + " |",
              "|" + "---|" * (1 + len(SPLITS) * len(METRICS))]
    for v in variants[1:]:
        cells = []
        for s in SPLITS:
            for m in METRICS:
                d = np.asarray(res["results"][v][s][m]["values"]) - np.asarray(res["results"][variants[0]][s][m]["values"])
                cells.append(f"{d.mean():+.1f} ± {d.std(ddof=1) if len(d) > 1 else 0.0:.1f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    by_backend = res.get("negatives_by_backend") or {"random": res["negatives"]}
    lines += ["", f"Pipeline negatives ({', '.join(by_backend)} backend) vs their query, % of rows per level:", "",
              "| backend | seed | level | valid | verb changed | noun changed | a video-encoded word changed "
              "| only other words changed | identical |", "|---|---|---|---|---|---|---|---|---|"]
    for backend, per_seed in by_backend.items():
        for seed, d in per_seed.items():
            for lv, c in d.items():
                lines.append(f"| {backend} | {seed} | {lv} | {c['valid']} | {c['verb_changed']} | "
                             f"{c['noun_changed']} | {c['event_word_changed']} | {c['only_other_words_changed']} | "
                             f"{c['identical']} |")
    fallbacks = {seed: d["lexical"] for seed, d in res.get("invalid_negatives", {}).items() if "lexical" in d}
    if fallbacks:
        lines += ["", "Invalid lexical negatives (masks with no word of D of the same fine tag), replaced by the "
                  "random run's negative for the same qid and level in the lexical word-vector store: "
                  + "; ".join(f"seed {seed}: {c['num_fallback']} rows replaced, {c['num_invalid']} left invalid"
                              for seed, c in fallbacks.items())]
    if res.get("quality"):
        lines += quality_lines(res["quality"])
    lines += ["", "Runs:", "", "| seed | variant | epochs | best epoch | train s | last-epoch L_cr | last-epoch L_fr |",
              "|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        ll = r["last_epoch_losses"]
        lines.append(f"| {r['seed']} | {r['variant']} | {r['epochs']} | {r['best_epoch']} | {r['train_s']} | "
                     f"{ll.get('loss_coarse_rank', '')} | {ll.get('loss_fine_rank', '')} |")
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "split", "metric", "mean", "std", "n_seeds", "values"])
        for key, block in [(v, res["results"][v]) for v in variants] + [(f"chance:{c}", res["chance"][c])
                                                                        for c in res["chance"]]:
            for s in SPLITS:
                for m in METRICS:
                    a = block[s][m]
                    w.writerow([key, s, m, f"{a['mean']:.4f}", f"{a['std']:.4f}", len(a["values"]),
                                " ".join(f"{x:.4f}" for x in a["values"])])
    (out / "results.json").write_text(json.dumps({**res, "command": command, "seconds": round(seconds, 1)}, indent=2)
                                      + "\n", encoding="utf-8")


def quality_lines(quality: dict) -> list[str]:
    """Markdown lines: the ``shine quality`` summaries of one seed's negatives runs side by side, per level."""
    backends = [b for b in quality if b != "seed"]
    levels = sorted(quality[backends[0]]["levels"], key=int)
    keys = [k for k, v in quality[backends[0]]["levels"][levels[0]].items() if isinstance(v, (int, float))]
    head = " | ".join(f"{b} L{lv}" for lv in levels for b in backends)
    lines = ["", f"`shine quality` of seed {quality['seed']}'s negatives runs (docs/quality.md):", "",
             f"| measure | {head} |", "|---|" + "---|" * (len(levels) * len(backends))]
    for k in keys:
        cells = [quality[b]["levels"][lv].get(k) for lv in levels for b in backends]
        lines.append(f"| {k} | " + " | ".join("n/a" if c is None else f"{c}" for c in cells) + " |")
    lines += ["", "monotone_hierarchy (similarity L1 > L2 > L3): "
              + ", ".join(f"{b} {quality[b].get('monotone_hierarchy')}" for b in backends)]
    return lines


def write_figure(res: dict, path: Path) -> None:
    """Bar chart of every metric per test split and variant (mean ± std), chance as dashed lines, at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = res["variants"]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4), sharey=False)
    width = 0.8 / len(variants)
    x = np.arange(len(SPLITS))
    colors = {"baseline": "#7f7f7f", "shine-random": "#1f77b4", "shine-oracle": "#ff7f0e", "shine-no-hn": "#2ca02c",
              "baseline-2x": "#bbbbbb", "shine-lexical": "#9467bd"}
    for ax, m in zip(axes, METRICS):
        for i, v in enumerate(variants):
            means = [res["results"][v][s][m]["mean"] for s in SPLITS]
            stds = [res["results"][v][s][m]["std"] for s in SPLITS]
            ax.bar(x + (i - (len(variants) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=v,
                   color=colors.get(v))
        for j, s in enumerate(SPLITS):
            c = res["chance"]["random_window"][s][m]["mean"]
            ax.hlines(c, j - 0.45, j + 0.45, colors="k", linestyles="--", linewidth=1,
                      label="chance (random window)" if j == 0 else None)
        ax.set_xticks(x, [s.replace("_", "\n") for s in SPLITS])
        ax.set_title(m)
        ax.set_ylabel("%")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(f"QD-DETR vs QD-DETR+SHINE, synthetic set ({res.get('mode', 'bag-of-words')}), mean ± std over seeds {res['seeds']}")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
