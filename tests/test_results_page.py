"""The results page (shine/results_page.py, shine/results_data.py, ``shine compare``): built from run directories,
self-contained, and rendered by a real headless browser (Debian's chromium) that shows the table and the curves."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shine.configs import ConfigValueError
from shine.results_data import config_diff, deltas, load_run, metric_rows, negative_examples, quality_summary
from shine.results_page import build_page, metrics_markdown
from tests.faults.harness import assert_one_line_error, run_cli

SPLITS = ("val", "test_trivial", "novel_word")


def make_run(path: Path, shift: float, lr: float, epochs: int = 3, shine: bool = False) -> Path:
    """A finished train run directory in the trainer's layout, metrics offset by ``shift``."""
    (path / "plots").mkdir(parents=True)
    metrics = {}
    for i, split in enumerate(SPLITS):
        model = {"R1@0.5": 40.0 + i + shift, "R1@0.7": 20.0 + i + shift, "mIoU": 35.0 + shift, "n_queries": 30.0 + i}
        chance = {} if split == "val" else {"random_window": {"R1@0.5": 9.0 + i, "R1@0.7": 2.0, "mIoU": 16.0}}
        metrics[split] = {"model": model, "chance": chance}
    (path / "metrics.json").write_text(json.dumps(metrics))
    log = []
    for e in range(epochs):
        train = {"loss": 10.0 - e - shift / 10, "loss_span": 1.0 / (e + 1)}
        if shine:
            train["loss_fine_rank"] = 0.5 / (e + 1)
        log.append({"epoch": e, "train": train, "val": {"R1@0.5": 30.0 + 5 * e + shift, "R1@0.7": 10.0 + e,
                                                         "mIoU": 25.0 + e}, "val_loss": 9.0 - e})
    (path / "train_log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log))
    config = {"out_dir": str(path), "optim": {"lr": lr, "epochs": epochs, "seed": 0}, "shine": {"enabled": shine}}
    (path / "manifest.json").write_text(json.dumps({"kind": "train", "config": config}))
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1, 2], [0, 1, 0])
    fig.savefig(path / "plots" / "test_trivial_saliency.png")
    plt.close(fig)
    return path


def make_negatives(path: Path, with_quality: bool = True) -> Path:
    path.mkdir(parents=True)
    qids = [f"q{i}" for i in range(8)]
    pq.write_table(pa.table({"qid": qids, "query": [f"person opens door {i}." for i in range(8)]}),
                   path / "queries.parquet")
    rows = [(q, lv, f"person <{lv}> door {i} & <b>.", lv != 2 or i % 2 == 0) for i, q in enumerate(qids)
            for lv in (1, 2, 3)]
    pq.write_table(pa.table({"qid": [r[0] for r in rows], "level": [r[1] for r in rows],
                             "negative": [r[2] for r in rows], "valid": [r[3] for r in rows]}),
                   path / "negatives.parquet")
    if with_quality:
        pq.write_table(pa.table({"qid": [r[0] for r in rows], "level": [r[1] for r in rows],
                                 "structure_kept": [r[3] for r in rows],
                                 "similarity": [0.1 * r[1] for r in rows]}), path / "quality.parquet")
    return path


@pytest.fixture()
def two_runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    base = make_run(tmp_path / "runs" / "baseline", shift=0.0, lr=1e-3)
    shine = make_run(tmp_path / "runs" / "shine", shift=2.5, lr=2e-3, shine=True)
    return base, shine, make_negatives(tmp_path / "negatives")


def test_rows_hold_every_split_with_chance_and_delta_rows(two_runs) -> None:
    base, shine, _ = two_runs
    runs = [load_run(base, "baseline"), load_run(shine, "SHINE")]
    rows = metric_rows(runs)
    assert [r["split"] for r in rows if r["kind"] == "delta"] == list(SPLITS)
    for split in SPLITS:
        model = {r["label"]: r for r in rows if r["split"] == split and r["kind"] == "model"}
        delta = next(r for r in rows if r["split"] == split and r["kind"] == "delta")
        for metric in ("R1@0.5", "R1@0.7", "mIoU"):
            assert delta[metric] == pytest.approx(model["SHINE"][metric] - model["baseline"][metric])
        assert any(r["kind"] == "chance" for r in rows if r["split"] == split) == (split != "val")
    assert deltas(runs)["SHINE"]["novel_word"] == {"R1@0.5": 2.5, "R1@0.7": 2.5, "mIoU": 2.5}
    diff = dict(config_diff(runs))
    assert diff == {"optim.lr": [1e-3, 2e-3], "shine.enabled": [False, True]}  # out_dir is not a difference


def test_negatives_examples_and_quality_per_level(two_runs, tmp_path: Path) -> None:
    *_, negatives = two_runs
    examples = negative_examples(negatives, n=3, seed=1)
    assert len(examples) == 3 and all(set(ex["levels"]) == {1, 2, 3} for ex in examples)
    assert examples == negative_examples(negatives, n=3, seed=1)  # seeded
    quality = {row["level"]: row for row in quality_summary(negatives)}
    assert quality["2"]["structure_kept"] == pytest.approx(0.5) and quality["1"]["structure_kept"] == 1.0
    assert quality["3"]["similarity"] == pytest.approx(0.3) and quality["3"]["rows"] == 8
    # the manifest's summary wins when the quality stage wrote one
    (negatives / "manifest.json").write_text(json.dumps({"quality": {"per_level": {"1": {"kept": 0.9}}}}))
    assert quality_summary(negatives) == [{"level": "1", "kept": 0.9}]
    (negatives / "manifest.json").unlink()  # `shine quality RUN --json RUN/quality.json` writes this layout
    (negatives / "quality.json").write_text(json.dumps({"rows": 16, "levels": {"1": {"rows": 8, "changed": 1.0},
                                                                               "2": {"rows": 8, "changed": 0.75}}}))
    assert quality_summary(negatives) == [{"level": "1", "rows": 8, "changed": 1.0},
                                          {"level": "2", "rows": 8, "changed": 0.75}]
    assert quality_summary(make_negatives(tmp_path / "no-quality", with_quality=False)) == []


def test_page_is_self_contained_with_relative_links(two_runs, tmp_path: Path) -> None:
    base, shine, negatives = two_runs
    page = tmp_path / "site" / "results.html"
    result = build_page([base, shine], page, labels=["baseline", "SHINE"], negatives=negatives, title="t <&>")
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text
    assert not re.search(r"""(src|href)=['"](https?:)?//""", text), "nothing may be fetched from a network"
    assert "<title>t &lt;&amp;&gt;</title>" in text  # escaped
    assert "&lt;b&gt;" in text and "(invalid)" in text  # negatives are escaped; invalid ones marked
    assert text.count("data:image/png;base64,") == 2  # one saliency plot per run, inlined
    hrefs = re.findall(r"href='([^']+)'", text)
    assert hrefs and not any(h.startswith("/") for h in hrefs)
    for h in hrefs:  # every link resolves from the page's folder
        assert (page.parent / h).exists(), h
    assert "../runs/shine/train_log.jsonl" in hrefs and "../negatives/quality.parquet" in hrefs
    md = metrics_markdown(result)
    assert "| test_trivial | **SHINE − baseline** | +2.50 |" in md


def test_a_run_without_metrics_is_refused(two_runs, tmp_path: Path) -> None:
    base, *_ = two_runs
    with pytest.raises(ConfigValueError, match="expected a finished train run"):
        build_page([base, tmp_path / "missing"], tmp_path / "p.html")
    with pytest.raises(ConfigValueError, match="one label per run"):
        build_page([base], tmp_path / "p.html", labels=["a", "b"])
    assert not (tmp_path / "p.html").exists()


def test_shine_compare_cli(two_runs, tmp_path: Path) -> None:
    base, shine, negatives = two_runs
    out = tmp_path / "cmp.html"
    res = run_cli(["compare", str(base), str(shine), "--negatives", str(negatives), "--out", str(out)], tmp_path,
                  timeout=120)
    assert res.rc == 0, res.stderr[-2000:]
    assert f"results page: {out.resolve()}" in res.stdout
    assert "id='metrics-table'" in out.read_text()
    bad = run_cli(["compare", str(base), str(tmp_path / "nope"), "--out", str(tmp_path / "bad.html")], tmp_path,
                  timeout=120)
    assert_one_line_error(bad, 2, "nope", "metrics.json")
    assert not (tmp_path / "bad.html").exists()


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("SHINE_REQUIRE_CHROMIUM"):
            pytest.fail("SHINE_REQUIRE_CHROMIUM is set but chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium); the page is not rendered here")
    return exe


def run_chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless chromium with nothing reaching the network, a throw-away profile."""
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def check_rendered(page: Path, tmp_path: Path, splits: tuple[str, ...], labels: tuple[str, ...]) -> None:
    """The browser's DOM holds the metrics table (a row per split and run, delta rows) and the curves as drawn SVG;
    a screenshot of the page is written beside it (``page.png``)."""
    res = run_chromium(page, tmp_path, "--dump-dom")
    dom = res.stdout
    assert res.returncode == 0 and "</html>" in dom, res.stderr[-2000:]
    table = re.search(r"<table id=\"metrics-table\">(.*?)</table>", dom, re.S)
    assert table, dom[:2000]
    rows = re.findall(r"<tr class=\"([^\"]*)\"><td>([^<]*)</td><td>([^<]*)</td>", table.group(1))
    for split in splits:
        assert {lab for cls, sp, lab in rows if sp == split and cls.startswith("model")} == set(labels), rows
        assert any(sp == split and cls.startswith("delta") for cls, sp, _ in rows), rows
    for curve in ("loss", "validation"):
        fig = re.search(rf"<figure class=\"curve\" id=\"curve-{curve}\">(.*?)</figure>", dom, re.S)
        assert fig and "<svg" in fig.group(1) and fig.group(1).count("<path") >= 3, curve
    shot = page.with_suffix(".png")
    res = run_chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars")
    assert res.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", res.stderr[-2000:]


def test_the_page_renders_in_a_headless_browser(two_runs, tmp_path: Path) -> None:
    base, shine, negatives = two_runs
    page = tmp_path / "results.html"
    build_page([base, shine], page, labels=["baseline", "SHINE"], negatives=negatives)
    check_rendered(page, tmp_path, SPLITS, ("baseline", "SHINE"))
