"""Config layering, presets, overrides and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from shine.configs import to_dict
from trainer.config import PRESETS, DataConfig, TrainConfig, config_from_dict, load_config
from trainer.errors import ConfigError


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads(preset: str) -> None:
    cfg = load_config(preset)
    assert cfg.preset == preset
    assert cfg.data.name == preset
    assert cfg.data.train and cfg.data.test


def test_dataset_layer_sets_clip_len_and_query_length() -> None:
    charades, anet = load_config("charades-cg"), load_config("anet-cg")
    assert (charades.data.clip_len, charades.data.max_q_l) == (0.5, 32)
    assert (anet.data.clip_len, anet.data.max_q_l) == (1.0, 50)
    assert (anet.model.enc_layers, anet.model.dec_layers) == (3, 3)
    assert set(charades.data.test) == {"test_trivial", "novel_composition", "novel_word"}


def test_model_layer_follows_arch_and_dataset_wins() -> None:
    assert load_config("charades-cg").optim.lr == pytest.approx(1e-4)  # QD-DETR
    assert load_config("charades-cg", overrides=["model.arch=moment_detr"]).optim.lr == pytest.approx(2e-4)
    # ActivityNet-CG sets 2e-4 for both models in the dataset layer, which comes after the model layer
    assert load_config("anet-cg").optim.lr == pytest.approx(2e-4)
    # an explicit override beats every layer
    assert load_config("anet-cg", overrides=["optim.lr=5e-5"]).optim.lr == pytest.approx(5e-5)


def test_fractional_clip_len_from_the_command_line() -> None:
    # the official --clip_length is declared int, so 0.5 fails there; here it is a float
    assert load_config("synthetic", overrides=["data.clip_len=0.5"]).data.clip_len == 0.5
    assert load_config(overrides={"data": {"clip_len": "1.5"}}).data.clip_len == 1.5


def test_yaml_file_layer_between_preset_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("preset: anet-cg\noptim: {epochs: 7, lr: 3.0e-4}\ndata: {max_v_l: 128}\n")
    cfg = load_config(config_file=path, overrides=["optim.epochs=9"])
    assert cfg.data.name == "anet-cg"
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.data.max_v_l) == (9, 3e-4, 128)


def test_unknown_key_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.learning_rate'.*\blr\b"):
        load_config("synthetic", overrides=["optim.learning_rate=1e-3"])
    with pytest.raises(ConfigError, match="unknown config key 'nonsense'"):
        load_config(overrides={"nonsense": 1})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.clip_len=0", r"data.clip_len: expected seconds > 0, got 0"),
        ("data.val_fraction=1.0", r"data.val_fraction"),
        ("optim.device=tpu", r"optim.device"),
        ("data.video_format=mp4", r"expected one of \['auto', 'npy', 'npz', 'hdf5'\]"),
        ("optim.batch_size=abc", r"expected an integer"),
        ("model.hidden_dim=30", r"model.hidden_dim"),
    ],
)
def test_bad_values_are_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("synthetic", overrides=[override])


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'charades'.*charades-cg"):
        load_config("charades")


def test_dict_round_trip_is_exact() -> None:
    cfg = load_config("anet-cg", overrides=["data.video_feature_dirs=[a, b]", "optim.seed=3"])
    again = config_from_dict(to_dict(cfg))
    assert again == cfg
    assert isinstance(again.data.video_feature_dirs, tuple)


def test_paths_resolve_against_root_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHINE_DATA_DIR", str(tmp_path))
    data = load_config("charades-cg").data
    assert data.path(data.train) == tmp_path / "charades_cg" / "charades_cg_train.jsonl"
    assert data.path("/abs/file.jsonl") == Path("/abs/file.jsonl")
    assert DataConfig().path("rel.jsonl") == Path("rel.jsonl")


def test_defaults_match_the_official_configs() -> None:
    cfg = TrainConfig()
    assert (cfg.optim.weight_decay, cfg.optim.grad_clip, cfg.optim.batch_size) == (1e-4, 0.1, 32)
    assert cfg.data.use_tef and cfg.optim.device == "auto" and cfg.optim.amp
    assert (cfg.model.hidden_dim, cfg.model.num_queries, cfg.model.nheads) == (256, 10, 8)
