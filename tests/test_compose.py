"""Static checks of docker-compose.yml, Dockerfile, .env.example and prefect.yaml (no Docker engine runs here)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict = COMPOSE["services"]
PREFECT_YAML = yaml.safe_load((ROOT / "prefect.yaml").read_text())
SECRET = re.compile(r"(KEY|PASSWORD|SECRET|TOKEN)", re.I)
INTERPOLATION = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")


def _commands(service: dict) -> list[list[str]]:
    """The argv lists a service runs (``sh -c "a && b"`` is split into its commands)."""
    cmd = service.get("command")
    if cmd is None:
        return []
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in re.split(r"&&|;", argv[2]) if part.strip()]
    return [argv]


def _mount(volume: str) -> tuple[str, str]:
    """(source, target) of a short-syntax volume; the source may hold ``${VAR:-default}``."""
    spec = re.sub(r":(ro|rw)$", "", volume)
    source, target = spec.rsplit(":", 1)
    return source, target


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_the_services_the_issue_asks_for() -> None:
    assert {"postgres", "prefect-server", "pipeline-worker", "trainer-worker"} <= set(SERVICES)
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    url = _env(SERVICES["prefect-server"])["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
    import asyncpg  # noqa: F401  (the driver the URL names ships with prefect)


DOCKERFILE = (ROOT / "Dockerfile").read_text()
#: stage name -> the image or stage it starts FROM
STAGES = {alias: parent for parent, alias in re.findall(r"^FROM (\S+) AS (\S+)$", DOCKERFILE, re.M)}


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if str(s.get("image", "")).startswith("shine:")))
def test_every_command_exists_in_the_project_image(name: str) -> None:
    service = SERVICES[name]
    if "build" in service:
        assert service["build"]["context"] == "." and service["build"]["target"] in STAGES
    commands = _commands(service)
    assert commands, f"{name}: no command"
    for argv in commands:
        exe = argv[0]
        assert exe in {"prefect", "shine"}, f"{name}: {exe!r} is not a command the image installs"
        assert (BIN / exe).is_file()
        # the sub-command exists and accepts every option used
        words = [a for a in argv[1:] if not a.startswith("-")]
        sub = [w for w in words[:3] if re.fullmatch(r"[a-z][a-z-]*", w)]
        args = [a for a in argv[1:] if a != "--no-prompt"]
        while sub and subprocess.run([str(BIN / exe), *sub, "--help"], capture_output=True).returncode != 0:
            sub.pop()
        res = subprocess.run([str(BIN / exe), *sub, "--help"], capture_output=True, text=True,
                             env={"COLUMNS": "300", "PATH": str(BIN)})
        assert res.returncode == 0, f"{name}: `{exe} {' '.join(sub)}` does not exist:\n{res.stderr}"
        for opt in (a.split("=")[0] for a in args if a.startswith("--")):
            assert opt in res.stdout, f"{name}: `{exe} {' '.join(sub)}` has no option {opt}"


def test_dockerfile_installs_what_the_commands_need() -> None:
    text = DOCKERFILE
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert "WORKDIR /app" in text and "pip install -e ." in text
    for path in ("pipeline", "trainer", "shine", "pyproject.toml", "prefect.yaml"):
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", text, re.M), f"Dockerfile does not copy {path}"
        assert (ROOT / path).exists()


def test_ports_and_api_urls_agree() -> None:
    server = SERVICES["prefect-server"]
    argv = _commands(server)[0]
    port = argv[argv.index("--port") + 1]
    assert f"{port}:{port}" in server["ports"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert f":{port}/api/health" in " ".join(server["healthcheck"]["test"])
    for name in ("deployer", "pipeline-worker", "trainer-worker"):
        api = urlparse(_env(SERVICES[name])["PREFECT_API_URL"])
        assert (api.hostname, str(api.port), api.path) == ("prefect-server", port, "/api"), name


def test_volumes_are_declared_and_shared() -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, service in SERVICES.items():
        for vol in service.get("volumes", []):
            source, _ = _mount(vol)
            if not source.startswith(("/", ".", "$", "~")):
                used.add(source)
    assert used == declared
    mounts = {n: dict(_mount(v)[::-1] for v in SERVICES[n]["volumes"]) for n in ("pipeline-worker", "trainer-worker")}
    for name, by_target in mounts.items():
        env = _env(SERVICES[name])
        assert by_target["/app/artifacts"] == "artifacts", name  # relative `out` of the deployments lands here
        assert by_target[env["SHINE_CACHE_DIR"]] == "llm-cache", name
        assert env["SHINE_DATA_DIR"] in by_target, name


def test_healthchecks_and_startup_order() -> None:
    for name in ("postgres", "prefect-server", "pipeline-worker", "trainer-worker"):
        assert SERVICES[name]["healthcheck"]["test"], name
    assert SERVICES["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("deployer", "pipeline-worker", "trainer-worker"):
        assert SERVICES[name]["depends_on"]["prefect-server"]["condition"] == "service_healthy", name
    for name in ("pipeline-worker", "trainer-worker"):
        assert SERVICES[name]["depends_on"]["deployer"]["condition"] == "service_completed_successfully"
        assert "--with-healthcheck" in _commands(SERVICES[name])[0]
        assert "8080/health" in " ".join(SERVICES[name]["healthcheck"]["test"])


def test_gpu_is_reserved_for_the_trainer_only() -> None:
    devices = SERVICES["trainer-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in SERVICES["pipeline-worker"]


def test_no_secret_values_in_the_files() -> None:
    for name, service in SERVICES.items():
        for key, value in _env(service).items():
            if SECRET.search(key):
                assert INTERPOLATION.match(value), f"{name}: {key} has a literal value"
            literal = re.sub(r"\$\{[^}]*\}", "", value)  # what is left once interpolations are removed
            assert not re.search(r"://[^/@]*:[^/@]+@", literal), f"{name}: {key} embeds a literal password"
    for name in ("pipeline-worker", "trainer-worker"):  # the LLM keys, by interpolation from .env
        assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"} <= set(_env(SERVICES[name])), name
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line.strip() and not line.startswith("#"))
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "POSTGRES_PASSWORD"} <= set(example)
    assert all(v == "" for k, v in example.items() if SECRET.search(k)), example


def test_work_pools_match_prefect_yaml() -> None:
    deployer = " ".join(" ".join(a) for a in _commands(SERVICES["deployer"]))
    pools = {d["work_pool"]["name"] for d in PREFECT_YAML["deployments"]}
    assert pools == {"shine-pipeline", "shine-trainer"}
    for pool in pools:
        assert f"work-pool create {pool}" in deployer
    assert "deploy --all" in deployer
    assert _commands(SERVICES["pipeline-worker"])[0][4] == "shine-pipeline"
    assert _commands(SERVICES["trainer-worker"])[0][4] == "shine-trainer"


def test_prefect_yaml_deployments_load_and_their_parameters_validate() -> None:
    from shine.serve import load_specs

    names = set()
    for spec in load_specs(ROOT / "prefect.yaml"):
        flow = spec.load_flow()
        full = spec.full_name(flow.name)
        assert full not in names
        names.add(full)
        required = {"build-negatives": {"out": "x"}, "encode-text": {"run": "x"}}.get(flow.name, {})
        flow.validate_parameters({**required, **spec.parameters})
    assert {"build-negatives/charades-cg", "build-negatives/anet-cg", "build-negatives/custom",
            "train/charades-cg", "train/anet-cg", "train/synthetic"} <= names


def test_docker_compose_config(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine: only the static checks above ran")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if version.returncode != 0:
        pytest.skip(f"`docker compose version` failed (compose plugin absent: {version.stderr.strip()[:120]})")
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    env = (ROOT / ".env.example").read_text().replace("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD=test-only\n")
    (tmp_path / ".env").write_text(env)
    res = subprocess.run([docker, "compose", "-f", str(tmp_path / "docker-compose.yml"), "config", "--quiet"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_one_cpu_image_built_once_and_cuda_torch_only_for_the_trainer() -> None:
    assert set(STAGES) == {"base", "cpu", "trainer"} and STAGES["cpu"] == STAGES["trainer"] == "base"
    cpu_stage = DOCKERFILE.split("AS cpu", 1)[1].split("FROM ", 1)[0]
    trainer_stage = DOCKERFILE.split("AS trainer", 1)[1]
    assert "download.pytorch.org/whl/cpu torch" in cpu_stage and "pip install -e ." in cpu_stage
    assert "whl/cpu" not in trainer_stage and "pip install torch" in trainer_stage
    builders = {n: s["build"] for n, s in SERVICES.items() if "build" in s}
    assert builders == {"prefect-server": {"context": ".", "target": "cpu"},
                        "trainer-worker": {"context": ".", "target": "trainer"}}
    for name, service in SERVICES.items():
        image = str(service.get("image", ""))
        if image == "shine:cpu" and "build" not in service:  # reuses prefect-server's build, never pulls
            assert service["pull_policy"] == "never", name
    assert SERVICES["trainer-worker"]["image"] == "shine:trainer"
    assert {n for n, s in SERVICES.items() if s.get("image") == "shine:cpu"} == {"prefect-server", "deployer",
                                                                                 "pipeline-worker"}


def test_trainer_has_shared_memory_for_its_data_loader() -> None:
    size = str(SERVICES["trainer-worker"]["shm_size"])
    assert re.fullmatch(r"\d+(gb|g)", size.lower()) and int(re.match(r"\d+", size).group()) >= 1


def test_only_postgres_and_the_server_see_the_database_password() -> None:
    for name, service in SERVICES.items():
        env = _env(service)
        sees = any("POSTGRES_PASSWORD" in v for v in env.values()) or "POSTGRES_PASSWORD" in env \
            or ".env" in (service.get("env_file") or [])
        assert sees == (name in {"postgres", "prefect-server"}), name


def test_dockerignore_keeps_the_venv_secrets_and_outputs_out_of_the_context() -> None:
    lines = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")}
    assert {".venv", ".env", "artifacts", ".git", ".prefect"} <= lines
    for path in ("pipeline", "trainer", "shine", "prompts", "pyproject.toml", "prefect.yaml", "README.md"):
        assert path not in lines  # what the Dockerfile copies stays in
