"""What a training run tells its user: per-epoch lines, curves, named headers, manifests; which negatives it read."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.trainer.synthetic_fixture import synthetic_dir, tiny_overrides
from trainer.config import ShineConfig, choose_negatives, load_config
from trainer.errors import ConfigError
from trainer.runner import train


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_dir(tmp_path_factory)


def _linked_copy(src: Path, dst: Path, store_json: dict | None = None) -> Path:
    """A directory of symlinks to ``src``'s entries (the session's data set stays untouched)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if store_json is not None and f.name == "store.json":
            (dst / f.name).write_text(json.dumps(store_json))
        else:
            (dst / f.name).symlink_to(f)
    return dst


def test_run_logs_epochs_writes_curves_and_names_itself(synth: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "baseline"
    result = train(load_config("synthetic", overrides=tiny_overrides(synth, out)))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2, err
    pattern = r"^epoch (\d)/2 \| loss \d+\.\d{4} \(.*span [\d.]+.*\) \| val R1@0\.5 [\d.]+ R1@0\.7 [\d.]+ mIoU [\d.]+ " \
              r"\(best \S+ [\d.]+ at epoch \d\) \| [\d.]+ s/epoch \| ETA \d+(s|m\d\ds)$"
    assert all(re.match(pattern, ln) for ln in lines), lines
    assert lines[-1].endswith("ETA 0s")
    assert "training baseline: synthetic / qd_detr / SHINE off" in err
    assert (out / "plots" / "loss_curves.png").stat().st_size > 1000
    assert (out / "plots" / "val_curves.png").stat().st_size > 1000
    assert (out / "metrics.md").read_text().startswith("# baseline: synthetic / qd_detr / SHINE off (best epoch")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_name"] == "baseline" and manifest["shine_negatives"] is None
    assert all(Path(v["path"]).is_absolute() for v in manifest["inputs"].values())
    assert len(manifest["runs"]) == 1 and manifest["runs"][0]["prefect_flow_run_id"] is None
    assert all("epoch_s" in json.loads(ln) for ln in (out / "train_log.jsonl").read_text().splitlines())
    metrics = json.loads((out / "metrics.json").read_text())
    model = metrics["val"]["model"]
    assert isinstance(model["n_queries"], int)
    assert all(v == round(v, 4) for k, v in model.items())
    # the same predictions through the standalone evaluator agree with the trainer's own float64 metrics
    official = json.loads((out / "official_eval" / "val.json").read_text())
    assert official["brief"]["MR-full-R1@0.5"] == round(model["R1@0.5"], 2)
    assert official["brief"]["MR-full-R1@0.7"] == round(model["R1@0.7"], 2)
    assert abs(official["brief"]["MR-full-mIoU"] - model["mIoU"]) <= 0.01
    assert (out / "official_eval" / "test_trivial.json").is_file()
    # resuming for one more epoch keeps the first invocation's entry
    resumed = load_config("synthetic", overrides=tiny_overrides(synth, out, "optim.epochs=3"))
    train(resumed, resume=True)
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    assert [r["resumed"] for r in runs] == [False, True] and runs[1]["epochs"] == [2, 3]
    assert result.epochs_run == 2


def test_shine_run_says_it_used_the_generator_oracle_negatives(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "shine"
    train(load_config("synthetic", overrides=tiny_overrides(synth, out, "shine.enabled=true", "optim.epochs=1")))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shine_negatives"]["source"] == "generator oracle"
    header = (out / "metrics.md").read_text().splitlines()[0]
    assert header.startswith("# shine: synthetic / qd_detr / SHINE on (alpha 1, beta 1, levels 3, ranking red, "
                             "negatives: generator oracle store ")


def test_pipeline_store_beside_the_data_replaces_the_oracle(synth: Path, tmp_path: Path) -> None:
    data = _linked_copy(synth, tmp_path / "exp" / "data")
    meta = json.loads((synth / "text_store" / "store.json").read_text())
    meta.update(encoder={"encoder": "word-vectors", "seed": 0, "dim": meta["dim"]}, stage="text-word-vectors")
    store = _linked_copy(synth / "text_store", tmp_path / "exp" / "negatives" / "text_features" / "word-vectors", meta)
    shine, choice = choose_negatives(ShineConfig(enabled=True), data / "text_store", label="preset synthetic")
    assert choice is not None and choice.source == "pipeline" and choice.found
    assert shine.hn_text_features == str(store)
    shine, choice = choose_negatives(ShineConfig(enabled=True, oracle_negatives=True), data / "text_store",
                                     label="preset synthetic")
    assert choice.source == "generator oracle" and shine.hn_text_features == ""
    assert choose_negatives(ShineConfig(enabled=False), data / "text_store", label="x") == (ShineConfig(), None)


def test_relative_store_path_is_read_from_the_current_directory(synth: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config("synthetic", overrides=tiny_overrides(synth, tmp_path / "r", "shine.enabled=true",
                                                            "shine.hn_text_features=stores/minilm"))
    assert cfg.shine.hn_text_features == str(tmp_path / "stores" / "minilm")  # not under data.root
    with pytest.raises(ConfigError, match=r"no text store at .*stores/minilm .*current directory.*shine encode-text"):
        train(cfg)
    assert not (tmp_path / "r").exists()  # nothing written before the check


def test_store_of_another_dimension_is_refused_up_front(synth: Path, tmp_path: Path) -> None:
    store = tmp_path / "minilm"
    store.mkdir()
    (store / "store.json").write_text(json.dumps({"dim": 384, "encoder": {"encoder": "minilm"}, "stage": "text-minilm"}))
    cfg = load_config("synthetic", overrides=tiny_overrides(synth, tmp_path / "r", "shine.enabled=true",
                                                            f"shine.hn_text_features={store}"))
    with pytest.raises(ConfigError) as err:
        train(cfg)
    msg = str(err.value)
    assert "\n" not in msg and str(store) in msg and "384-d minilm" in msg and "preset synthetic" in msg
    dim = json.loads((synth / "text_store" / "store.json").read_text())["dim"]
    assert f"are {dim}-d" in msg and f"--encoder-seed 0 --dim {dim}`" in msg
    assert not os.path.exists(tmp_path / "r")


def test_resume_refuses_a_rebuilt_negative_store(synth: Path, tmp_path: Path) -> None:
    meta = json.loads((synth / "text_store" / "store.json").read_text())
    meta.update(encoder={"encoder": "word-vectors", "seed": 0, "dim": meta["dim"]}, stage="text-word-vectors")
    store = _linked_copy(synth / "text_store", tmp_path / "neg" / "text_features" / "word-vectors",
                         {**meta, "fingerprint": "a" * 64})
    out = tmp_path / "run"
    sets = ("shine.enabled=true", f"shine.hn_text_features={store}")
    train(load_config("synthetic", overrides=tiny_overrides(synth, out, *sets, "optim.epochs=1")))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shine_negatives"]["fingerprint"] == "a" * 64  # a reader can tell which negatives it saw
    # the store is rebuilt under the same path (another backend, new rules): the epochs so far saw other negatives
    (store / "store.json").write_text(json.dumps({**meta, "fingerprint": "b" * 64}))
    before = (out / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(ConfigError) as err:
        train(load_config("synthetic", overrides=tiny_overrides(synth, out, *sets)), resume=True)
    msg = str(err.value)
    assert "\n" not in msg and "changed since this run started" in msg and str(store) in msg
    assert "aaaaaaaaaaaa -> bbbbbbbbbbbb" in msg and "another --out" in msg
    assert (out / "checkpoints" / "last.pt").read_bytes() == before  # nothing written
    (store / "store.json").write_text(json.dumps({**meta, "fingerprint": "a" * 64}))  # the same negatives: resumes
    assert train(load_config("synthetic", overrides=tiny_overrides(synth, out, *sets)), resume=True).epochs_run == 2
