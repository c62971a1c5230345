"""``shine serve --list`` prints every parameter of each deployment's flow, not only the prefect.yaml values."""

from __future__ import annotations

from pathlib import Path

from shine.serve import describe_parameters, load_specs
from tests.faults.harness import run_cli

YAML = """
deployments:
  - name: synthetic
    entrypoint: trainer.flow.train_flow
    parameters:
      preset: synthetic
      out: artifacts/train/synthetic
"""


def test_every_flow_parameter_is_listed_with_its_source(tmp_path: Path) -> None:
    (tmp_path / "prefect.yaml").write_text(YAML)
    (spec,) = load_specs(tmp_path / "prefect.yaml")
    head, *params = describe_parameters(spec)
    assert head == "train/synthetic  (trainer.flow.train_flow)"
    by_name = {line.split()[1].split("=")[0]: line for line in params}
    assert list(by_name) == ["preset", "out", "config_file", "overrides", "resume"]
    assert '--param out="artifacts/train/synthetic"  [str | null; prefect.yaml]' in by_name["out"]
    assert "--param resume=false  [bool; default]" in by_name["resume"]
    assert "{charades-cg,anet-cg,charades-sta,synthetic} | null; prefect.yaml" in by_name["preset"]
    assert "nested config overrides" in by_name["overrides"]


def test_cli_list_prints_them(tmp_path: Path) -> None:
    (tmp_path / "prefect.yaml").write_text(YAML)
    res = run_cli(["serve", "--list", "--file", str(tmp_path / "prefect.yaml")], tmp_path)
    assert res.rc == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith("train/synthetic")
    assert "--param config_file=null" in res.stdout
