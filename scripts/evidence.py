#!/usr/bin/env python
"""Evidence for issue 6: does SHINE help QD-DETR on the project's synthetic compositional data set?

For every seed S this runs the whole chain through the project's own commands:

1. ``shine make-synthetic --seed S``                  train / test_trivial / novel_composition / novel_word
2. ``shine build-negatives --dataset custom --input train.jsonl --backend random --set backend.seed=S``
                                                       POS tags, dictionary D, masking, the random backend
3. ``shine encode-text --encoder word-vectors --encoder-seed S --dim D``
                                                       the negatives in the synthetic set's text space (the
                                                       pos rows are checked to equal the set's own store)
4. ``shine train --preset synthetic`` three times, same seed and epochs:
   ``baseline``      QD-DETR
   ``shine-random``  QD-DETR + SHINE, hard negatives from step 2/3 (what a user of the pipeline gets offline)
   ``shine-oracle``  QD-DETR + SHINE, the generator's own hard negatives (hn1 swaps exactly the verb, hn2 the
                     verb and the noun, hn3 also the modifier: the cleanest hierarchy the data allows);
                     ``--no-oracle`` leaves it out
   ``shine-lexical`` (only with ``--variants``) QD-DETR + SHINE trained exactly like shine-random, its negatives
                     from ``build-negatives --backend lexical --set backend.seed=S`` in ``seedS/negatives-lexical``
                     (own word-vector store); the first seed's two negatives runs are scored with ``shine quality``
                     into ``OUT/quality-{random,lexical}.json``

and writes ``OUT/results.{md,csv,json}`` (mean ± std over seeds of R1@0.5, R1@0.7 and mIoU per test split, with
the chance rows) and ``OUT/results.png``, both rendered by ``scripts/evidence_report.py``. Progress goes to
stderr. ``--tiny`` (tiny model, small set) is the CI version of the chain. Runs already finished in ``--work``
(a ``metrics.json``) are reused unless ``--fresh``, when trained with the same ``--set`` overrides, in the same
precision and, for a SHINE variant, on the negatives its store holds now (the store fingerprint in its manifest).

    python scripts/evidence.py --mode noun-shortcut  # the README's table (make evidence): 3 seeds, 20 epochs
    python scripts/evidence.py                       # the bag-of-words table (make evidence-bow)
    python scripts/evidence.py --tiny --seeds 0 --epochs 1 --out /tmp/ev --no-oracle
    python scripts/evidence.py --mode noun-shortcut --variants baseline shine-random shine-lexical \
        --out artifacts/evidence-lexical                # lexical vs random negatives (make evidence-lexical)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


# the tables and the figure live in the sibling module; scripts/ is put on the path for loads by file path (tests)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from evidence_checks import check_same_space, negatives_diagnostics  # noqa: E402
from evidence_report import collect, write_figure, write_tables  # noqa: E402

VARIANTS = ("baseline", "shine-random", "shine-oracle", "shine-no-hn", "baseline-2x", "shine-hn-third",
            "shine-lexical")
#: the backends a seed's negatives can come from, and their run directory under ``seedS/``
NEGATIVES_RUNS = {"random": "negatives", "lexical": "negatives-lexical"}
TINY_MODEL = ("model.hidden_dim=16", "model.dim_feedforward=32", "model.nheads=2", "model.enc_layers=1",
              "model.dec_layers=2", "model.num_queries=4")
_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[evidence {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def shine_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("shine")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "shine"]


#: set by --in-process: every ``shine`` command runs in this process (no interpreter/torch start-up per step,
#: trainings one after the other); the CI test uses it
IN_PROCESS = False

#: set by --set: trainer overrides appended to every training (e.g. ``optim.amp=bf16``); a finished run is reused
#: only when it was trained with the same ones (its ``evidence_sets.json``)
TRAIN_SETS: tuple[str, ...] = ()
SETS_FILE = "evidence_sets.json"


def run(cmd: list[str], logfile: Path) -> None:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    if IN_PROCESS:
        import contextlib

        from shine.cli import main as shine_main

        with open(logfile, "w") as fh, contextlib.redirect_stdout(fh):
            rc = shine_main(cmd[len(shine_cmd()):])
        if rc:
            raise SystemExit(f"command failed ({rc}), see {logfile}:\n  {' '.join(cmd)}")
        return
    with open(logfile, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env())
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}), see {logfile}:\n  {' '.join(cmd)}\n"
                         + logfile.read_text()[-3000:])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# --- data: synthetic set -> negatives -> text features ------------------------------------------------------------


def _data_matches(data: Path, size: str, mode: str) -> bool:
    if not (data / "synthetic.json").is_file():
        return False
    meta = json.loads((data / "synthetic.json").read_text())
    return meta.get("size") == size and meta.get("mode", {}).get("name", "bag-of-words") == mode


def prepare_seed(seed: int, work: Path, size: str, fresh: bool, mode: str = "bag-of-words",
                 backends: tuple[str, ...] = ("random",)) -> dict:
    """Steps 1-3 for one seed, steps 2-3 once per backend of ``backends`` (each in its own run directory and
    word-vector store); returns paths and the negatives diagnostics (``store``/``negatives`` are the random
    backend's, ``stores``/``negatives_by_backend`` hold every backend's)."""
    sdir = (work / f"seed{seed}").resolve()
    data = sdir / "data"
    stale = (data / "synthetic.json").is_file() and not _data_matches(data, size, mode)
    if sdir.exists() and (fresh or stale):
        if stale:  # another size or mode: its data and runs do not belong to this table
            log(f"seed {seed}: {sdir} holds another size or mode than --size {size} --mode {mode}; starting over")
        shutil.rmtree(sdir)
    if not (data / "synthetic.json").is_file():
        log(f"seed {seed}: make-synthetic --size {size} --mode {mode}")
        run([*shine_cmd(), "make-synthetic", "--out", str(data), "--seed", str(seed), "--size", size, "--mode", mode,
             "--overwrite"], sdir / "logs/make-synthetic.log")
    meta = json.loads((data / "synthetic.json").read_text())
    dim = int(meta["dims"]["text_dim"])
    stores: dict[str, Path] = {}
    diagnostics: dict[str, dict] = {}
    fallbacks: dict[str, dict] = {}
    same = 0
    for backend in ("random", *(b for b in backends if b != "random")):
        negrun = sdir / NEGATIVES_RUNS[backend]
        suffix = "" if backend == "random" else f"-{backend}"  # the random run keeps its log names (reused work)
        log(f"seed {seed}: build-negatives ({backend} backend)")
        run([*shine_cmd(), "build-negatives", "--dataset", "custom", "--input", str(data / "train.jsonl"), "--out",
             str(negrun), "--backend", backend, "--set", f"backend.seed={seed}"],
            sdir / f"logs/build-negatives{suffix}.log")
        log(f"seed {seed}: encode-text {NEGATIVES_RUNS[backend]} --encoder word-vectors --encoder-seed {seed} "
            f"--dim {dim}")
        # a mask the lexical backend cannot fill (no word of D with its fine tag) is an invalid row with an empty
        # negative; those rows take the random run's negative for the same qid and level (counted in store.json)
        fallback = [] if backend == "random" else ["--invalid", "fallback", "--fallback-negatives",
                                                   str(sdir / NEGATIVES_RUNS["random"] / "negatives.parquet")]
        run([*shine_cmd(), "encode-text", "--run", str(negrun), "--encoder", "word-vectors", "--encoder-seed",
             str(seed), "--dim", str(dim), *fallback], sdir / f"logs/encode-text{suffix}.log")
        stores[backend] = negrun / "text_features" / "word-vectors"
        store_meta = json.loads((stores[backend] / "store.json").read_text())
        fallbacks[backend] = {k: store_meta.get(k) for k in ("num_invalid", "num_fallback")}
        same = check_same_space(stores[backend], data / "text_store")
        log(f"seed {seed}: {backend} run's pos features == synthetic store pos features for {same} queries")
        diagnostics[backend] = negatives_diagnostics(negrun / "negatives.parquet", meta)
    return {"seed": seed, "data": data, "store": stores["random"], "stores": stores, "dim": dim,
            "pos_rows_identical": same, "negatives": diagnostics["random"], "negatives_by_backend": diagnostics,
            "invalid_negatives": fallbacks}


def score_quality(prep: dict, out: Path, fresh: bool = False) -> dict[str, Path]:
    """``shine quality RUN --json OUT/quality-{backend}.json`` for each negatives run of ``prep``; a report already
    in ``out`` is kept unless ``fresh`` (one seed's report is the comparison; a run per seed reuses it)."""
    written = {}
    sdir = Path(prep["store"]).parents[2]
    for backend in prep["stores"]:
        dest = (out / f"quality-{backend}.json").resolve()
        if dest.is_file() and not fresh:
            log(f"{dest} already written, reused")
            written[backend] = dest
            continue
        log(f"seed {prep['seed']}: shine quality {NEGATIVES_RUNS[backend]} -> {dest}")
        run([*shine_cmd(), "quality", str(sdir / NEGATIVES_RUNS[backend]), "--json", str(dest)],
            sdir / f"logs/quality-{backend}.log")
        written[backend] = dest
    return written


# --- training ------------------------------------------------------------------------------------------------------


def train_cmd(prep: dict, variant: str, out: Path, epochs: int, tiny: bool) -> list[str]:
    sets = [f"data.root={prep['data']}", f"optim.seed={prep['seed']}", f"optim.epochs={epochs}", "optim.device=cpu",
            "optim.num_threads=1", "optim.num_workers=0", "progress=false", "plot_queries=0"]
    if tiny:
        sets += ["optim.batch_size=32", *TINY_MODEL]
    store = variant_store(prep, variant)
    if store is not None:  # shine-lexical: shine-random's settings, the lexical backend's negatives
        sets += ["shine.enabled=true", f"shine.hn_text_features={store}"]
    if variant == "shine-oracle":
        sets += ["shine.enabled=true", "shine.oracle_negatives=true"]  # the synthetic store's own hn1..hn3
    elif variant == "shine-no-hn":  # L_cr (easy negative = batch-rolled query) and L_intra only
        sets += ["shine.use_fine=false"]
    elif variant == "shine-hn-third":  # the cheaper step: hard negatives scored for ceil(0.34 B) rows
        sets += ["shine.hn_fraction=0.34"]
    elif variant == "baseline-2x":
        sets += [f"optim.epochs={2 * epochs}"]
    sets += TRAIN_SETS  # last, so they win
    cmd = [*shine_cmd(), "train", "--preset", "synthetic", "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def variant_store(prep: dict, variant: str) -> Path | None:
    """The pipeline text store a variant trains its hard negatives from (None: baseline, oracle)."""
    if variant == "shine-lexical":
        return prep["stores"]["lexical"]
    return prep["store"] if variant in ("shine-random", "shine-no-hn", "shine-hn-third") else None


def expected_amp() -> str:
    """The precision this invocation's trainings run in (``optim.amp`` of ``--set``, else ``auto``, resolved for
    the CPU: ``auto`` is bf16 on CPUs with native bf16 since December 2026, fp32 before)."""
    from trainer.build import resolve_amp

    mode = next((s.split("=", 1)[1] for s in reversed(TRAIN_SETS) if s.startswith("optim.amp=")), "auto")
    return resolve_amp(mode, "cpu")


def _reusable(run_dir: Path, store: Path | None = None) -> bool:
    """A finished run trained with this invocation's ``--set`` overrides (runs from before the file: none), in the
    precision they resolve to now (its manifest's ``amp``) and, for a SHINE variant, on the negatives ``store``
    holds now (a store rebuilt since, e.g. after a backend's rules changed, has another fingerprint than the run's
    manifest recorded). Anything else is retrained rather than mixed into one table."""
    if not (run_dir / "metrics.json").is_file() or not (run_dir / "manifest.json").is_file():
        return False
    marker = run_dir / SETS_FILE
    sets = json.loads(marker.read_text()) if marker.is_file() else []
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if store is not None:
        trained = (manifest.get("shine_negatives") or {}).get("fingerprint")
        if trained != json.loads((Path(store) / "store.json").read_text()).get("fingerprint"):
            return False
    return sets == list(TRAIN_SETS) and manifest.get("amp") == expected_amp()


def _mark_sets(run_dir: Path) -> None:
    (run_dir / SETS_FILE).write_text(json.dumps(list(TRAIN_SETS)) + "\n")


def train_all(jobs: list[tuple[dict, str, Path]], epochs: int, tiny: bool, parallel: int, fresh: bool) -> None:
    pending = [j for j in jobs if fresh or not _reusable(j[2], variant_store(j[0], j[1]))]
    for prep, variant, out in jobs:
        if (prep, variant, out) not in pending:
            log(f"seed {prep['seed']}: {variant} already trained ({out}), reused")
    running: list[tuple[subprocess.Popen, str, Path, float, object, Path]] = []
    if IN_PROCESS:
        for prep, variant, out in pending:
            if out.exists():
                shutil.rmtree(out)
            log(f"seed {prep['seed']}: train {variant} ({epochs} epochs, in process) -> {out}")
            t0 = time.perf_counter()
            run(train_cmd(prep, variant, out, epochs, tiny), out.parent / f"logs/train-{variant}.log")
            _mark_sets(out)
            log(f"seed {prep['seed']} {variant}: done in {time.perf_counter() - t0:.0f} s")
        return
    while pending or running:
        while pending and len(running) < parallel:
            prep, variant, out = pending.pop(0)
            if out.exists():
                shutil.rmtree(out)
            logf = out.parent / f"logs/train-{variant}.log"
            logf.parent.mkdir(parents=True, exist_ok=True)
            fh = open(logf, "w")
            cmd = train_cmd(prep, variant, out, epochs, tiny)
            log(f"seed {prep['seed']}: train {variant} ({2 * epochs if variant == 'baseline-2x' else epochs} epochs) -> {out}")
            running.append((subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env()),
                            f"seed {prep['seed']} {variant}", logf, time.perf_counter(), fh, out))
        time.sleep(0.5)
        for item in list(running):
            proc, name, logf, t0, fh, run_dir = item
            if proc.poll() is None:
                continue
            fh.close()
            running.remove(item)
            if proc.returncode != 0:
                for p, *_ in running:
                    p.terminate()
                raise SystemExit(f"training {name} failed ({proc.returncode}), see {logf}:\n" + logf.read_text()[-3000:])
            _mark_sets(run_dir)
            log(f"{name}: done in {time.perf_counter() - t0:.0f} s")


def _seed_of(source: str | None) -> int | None:
    """The seed S of a negatives run path ``.../seedS/negatives...`` (the run a quality report scored)."""
    import re

    m = re.search(r"seed(\d+)[/\\]negatives", source or "")
    return int(m.group(1)) if m else None


def _quality_levels(path: Path) -> dict:
    """The per-level summary of a ``shine quality --json`` report, plus the file it came from."""
    report = json.loads(path.read_text())
    return {"file": str(path), "source": report.get("source"), "levels": report["levels"],
            "monotone_hierarchy": report.get("monotone_hierarchy"), "diversity": report.get("diversity")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="artifacts/evidence", help="results.{md,csv,json,png} go here")
    p.add_argument("--work", help="data, negatives and runs (default: OUT/work)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--size", choices=("small", "default"), default="default")
    p.add_argument("--mode", choices=("bag-of-words", "noun-shortcut"), default="bag-of-words",
                   help="synthetic set mode (trainer/synthetic.py): noun-shortcut is the set where only textual "
                   "hard negatives teach the verb")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)), help="trainings at once")
    p.add_argument("--tiny", action="store_true", help="tiny model settings (the CI version)")
    p.add_argument("--no-oracle", dest="oracle", action="store_false", help="leave out the shine-oracle runs")
    p.add_argument("--fresh", action="store_true", help="redo everything instead of reusing finished runs")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                   help="runs per seed (default: baseline shine-random shine-oracle; the controls are "
                   "shine-no-hn and baseline-2x, shine-hn-third the cheaper step, shine-lexical SHINE with the "
                   "lexical backend's negatives); the first one is the reference of the difference table")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="trainer override for every training, repeatable (e.g. --set optim.amp=bf16: the table "
                   "with the bf16 fast path)")
    p.add_argument("--in-process", action="store_true",
                   help="run the shine commands inside this process, trainings one at a time (CI)")
    args = p.parse_args(argv)
    global IN_PROCESS, TRAIN_SETS
    IN_PROCESS = args.in_process
    TRAIN_SETS = tuple(args.sets)
    out = Path(args.out)
    work = Path(args.work) if args.work else out / "work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str((work / ".prefect").resolve()))
    command = "python scripts/evidence.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.perf_counter()
    variants = args.variants or (["baseline", "shine-random"] + (["shine-oracle"] if args.oracle else []))
    backends = ("random", "lexical") if "shine-lexical" in variants else ("random",)
    preps = [prepare_seed(s, work, args.size, args.fresh, args.mode, backends) for s in args.seeds]
    quality = score_quality(preps[0], out, args.fresh) if "lexical" in backends else {}
    jobs = [(prep, v, work / f"seed{prep['seed']}" / v) for prep in preps for v in variants]
    train_all(jobs, args.epochs, args.tiny, args.jobs, args.fresh)
    res = collect(preps, variants, work)
    res["mode"] = args.mode
    if quality:
        res["quality"] = {b: _quality_levels(p) for b, p in quality.items()}
        res["quality"]["seed"] = _seed_of(res["quality"]["random"]["source"])
    seconds = time.perf_counter() - t0
    write_tables(res, out, command.strip(), seconds)
    write_figure(res, out / "results.png")
    log(f"done in {seconds / 60:.1f} min: {out / 'results.md'}, results.csv, results.json, results.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
