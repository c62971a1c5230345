"""A wheel (non-editable) install carries every data file the code reads at run time: prompt templates, the LLM
rate-limit tables, the pipeline's dataset presets and the trainer's config presets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_install_finds_templates_limits_and_presets(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("pipeline", "trainer", "shine", "prompts"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
                   check=True, cwd=src, capture_output=True)
    wheel = next((tmp_path / "dist").glob("shine-*.whl"))
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True)
    probe = (
        "import pipeline, trainer.config as c\n"
        "from pipeline.llm.prompts import find_prompt_dir, load_prompts\n"
        "d = find_prompt_dir(); p = load_prompts('v1')\n"
        "assert str(d).startswith(r'%s'), d\n"
        "assert pipeline.__file__.startswith(r'%s'), pipeline.__file__\n"
        "from pipeline.llm.pricing import provider_table\n"
        "assert provider_table('openai')\n"
        "from pipeline.config import DATASET_PRESETS\n"  # pipeline/presets/*.yaml are package data too
        "assert DATASET_PRESETS['anet-cg']['mask']['ratios'] == [0.1, 0.3, 0.5], dict(DATASET_PRESETS)\n"
        "print(d.name, len(p.fingerprint), c.load_config('synthetic').optim.epochs > 0)\n"
    ) % (target, target)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHINE_PROMPTS_DIR")}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["prompts", out.stdout.split()[1], "True"]
