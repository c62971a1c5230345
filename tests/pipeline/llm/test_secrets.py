"""Secrets (auth headers, base_url credentials, API keys) reach the provider and nothing else.

The end-to-end case plants secrets in a real ``shine build-negatives`` run against the local provider server and
searches the run directory, the LLM cache, stdout/stderr and the Prefect database (read as bytes) for each one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path

import pytest

from pipeline.config import BackendConfig
from pipeline.errors import ConfigError
from pipeline.llm import check_llm_config, make_llm_backend
from pipeline.llm.secrets import SECRET_ENV_PREFIX, move_secrets_to_env
from tests.faults.harness import cli_env, run_cli
from tests.pipeline.llm.helpers import SECRETS, backend_config, dictionary, make_requests

# assembled at run time, like the fake keys, so no committed line looks like a credential
HEADER_SECRET = "Bearer " + "proxy-SECRET-" + "7c1d2e3f4a5b"
URL_PASSWORD = "pw-SECRET-" + "0a9b8c7d"
TOKEN_SECRET = "tok-SECRET-" + "55aa66bb"


def test_cli_overrides_move_secret_values_into_variables():
    env: dict[str, str] = {}
    overrides = {"backend": {"name": "openai", "options": {
        "headers": {"Proxy-Authorization": HEADER_SECRET, "X-Auth-Token": TOKEN_SECRET, "X-Team": "grounding"},
        "base_url": f"https://alice:{URL_PASSWORD}@proxy.example:8443/v1", "temperature": 0.5}}}
    moved = move_secrets_to_env(overrides, env)
    opts = moved["backend"]["options"]
    assert opts["headers"] == {"X-Team": "grounding"} and opts["temperature"] == 0.5
    assert opts["base_url"] == "https://proxy.example:8443/v1"
    assert set(env) == {*opts["headers_env"].values(), opts["base_url_env"]}
    assert all(name.startswith(SECRET_ENV_PREFIX) for name in env)
    assert env[opts["headers_env"]["Proxy-Authorization"]] == HEADER_SECRET
    assert URL_PASSWORD in env[opts["base_url_env"]]
    for secret in (HEADER_SECRET, TOKEN_SECRET, URL_PASSWORD):
        assert secret not in json.dumps(moved)
    # the input is not changed, and the names are stable across runs (the stage fingerprint stays the same)
    assert overrides["backend"]["options"]["headers"]["Proxy-Authorization"] == HEADER_SECRET
    assert move_secrets_to_env(overrides, {}) == moved


@pytest.mark.parametrize("options", [{"headers": {"Proxy-Authorization": HEADER_SECRET}},
                                     {"headers": {"X-Auth-Token": TOKEN_SECRET}},
                                     {"base_url": f"http://bob:{URL_PASSWORD}@127.0.0.1:9/v1"}])
def test_secret_values_in_a_config_file_or_deployment_parameter_are_refused(options):
    with pytest.raises(ConfigError, match="environment variable") as err:
        check_llm_config(BackendConfig(name="openai", options=options))
    text = str(err.value)
    assert "\n" not in text and "_env" in text
    assert HEADER_SECRET not in text and URL_PASSWORD not in text and TOKEN_SECRET not in text


def test_a_named_variable_that_is_not_set_is_named(monkeypatch):
    monkeypatch.delenv("SHINE_TEST_PROXY", raising=False)
    with pytest.raises(ConfigError, match="SHINE_TEST_PROXY, which is not set"):
        check_llm_config(BackendConfig(name="openai", options={"headers_env": {"Proxy-Authorization": "SHINE_TEST_PROXY"}}))


def test_unknown_model_of_an_official_api_fails_before_any_work():
    with pytest.raises(ConfigError, match="'bogus' is not a known openai model"):
        check_llm_config(BackendConfig(name="openai", model="bogus"))
    # a compatible server (base_url) or explicit prices make any model name acceptable
    check_llm_config(BackendConfig(name="openai", model="bogus", options={"base_url": "http://127.0.0.1:9/v1"}))
    check_llm_config(BackendConfig(name="llama3", model="llama3:8b"))


def test_secrets_from_variables_reach_the_provider_and_no_file(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SHINE_TEST_PROXY", HEADER_SECRET)
    monkeypatch.setenv("SHINE_TEST_URL", f"{server.url.replace('://', f'://alice:{URL_PASSWORD}@')}/v1")
    cfg = backend_config("openai", server.url, tmp_path, headers_env={"Proxy-Authorization": "SHINE_TEST_PROXY"},
                         base_url_env="SHINE_TEST_URL")
    backend = make_llm_backend(cfg, dictionary(), tmp_path / "run")

    async def go():
        try:
            return await backend.fill_batch(make_requests(2))
        finally:
            await backend.close()

    responses = asyncio.run(go())
    assert all(f.valid for r in responses for f in r.fills)
    basic = "Basic " + base64.b64encode(f"alice:{URL_PASSWORD}".encode()).decode()
    assert ("proxy-authorization", HEADER_SECRET) in server.seen_headers
    assert ("authorization", basic) in server.seen_headers
    stats = json.dumps(backend.stats())
    assert "***@" in backend.stats()["base_url"]
    blobs = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()] + [stats.encode(), repr(backend).encode()]
    for secret in (HEADER_SECRET, URL_PASSWORD, basic, SECRETS["OPENAI_API_KEY"]):
        assert not any(secret.encode() in b for b in blobs), secret


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
def test_sdk_debug_logs_hold_no_secret(name, server, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SHINE_TEST_PROXY", HEADER_SECRET)
    base = server.url.replace("://", f"://alice:{URL_PASSWORD}@") + ("/v1" if name == "openai" else "")
    monkeypatch.setenv("SHINE_TEST_URL", base)
    cfg = backend_config(name, server.url, tmp_path, headers_env={"Proxy-Authorization": "SHINE_TEST_PROXY"},
                         base_url_env="SHINE_TEST_URL")
    backend = make_llm_backend(cfg, dictionary(), tmp_path / "run")
    server.faults.script.extend(["503"])  # an error path too

    async def go():
        try:
            return await backend.fill_batch(make_requests(2))
        finally:
            await backend.close()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(go())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "127.0.0.1" in text  # the SDKs and httpx did log their requests...
    for secret in (HEADER_SECRET, URL_PASSWORD, SECRETS[{"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY",
                                                          "gemini": "GEMINI_API_KEY"}[name]]):
        assert secret not in text  # ...without a secret


def _input(shared_data: Path, tmp: Path, n: int) -> Path:
    lines = (shared_data / "charades_cg" / "charades_cg_train.jsonl").read_text().splitlines()[:n]
    path = tmp / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_planted_secrets_never_reach_run_dir_cache_logs_or_prefect_database(server, shared_data, tmp_path):
    inp = _input(shared_data, tmp_path, 8)
    out, cache = tmp_path / "out", tmp_path / "cache"
    url = server.url.replace("://", f"://alice:{URL_PASSWORD}@")
    # INFO: Prefect keeps the flow's log lines in its database too, so they are searched as well
    env = cli_env(tmp_path, PREFECT_LOGGING_LEVEL="INFO", **SECRETS)
    args = ["build-negatives", "--input", str(inp), "--out", str(out), "--backend", "openai",
            "--set", f"backend.options.base_url={url}/v1", "--set", f"backend.options.cache_dir={cache}",
            "--set", "backend.options.progress=false",
            "--set", "backend.options.headers=" + json.dumps({"Proxy-Authorization": HEADER_SECRET,
                                                               "X-Auth-Token": TOKEN_SECRET})]
    res = run_cli(args, tmp_path, env=env)
    assert res.rc == 0, res.stderr[-3000:]
    assert ("proxy-authorization", HEADER_SECRET) in server.seen_headers  # the secrets did reach the provider
    assert ("x-auth-token", TOKEN_SECRET) in server.seen_headers
    # a second run, uncached into a new directory, fails (the provider is gone): its error path must not leak
    server.__exit__()
    out2 = tmp_path / "out2"
    res2 = run_cli([str(out2) if a == str(out) else a for a in args] + [
        "--set", "backend.options.retry.max_retries=0", "--set", "backend.options.cache_dir=off"], tmp_path, env=env)
    assert res2.rc == 3, res2.stderr[-3000:]
    home = tmp_path / ".prefect-home"
    databases = [p for p in home.rglob("*.db*") if p.is_file()]
    assert databases, f"no Prefect database under {home}"
    # the flow runs and their parameters are in there: the variables' names, not the values
    assert any(b"build-negatives" in p.read_bytes() and SECRET_ENV_PREFIX.encode() in p.read_bytes()
               for p in databases)
    blobs = {str(p): p.read_bytes() for root in (out, out2, cache, home) for p in root.rglob("*") if p.is_file()}
    blobs.update({"stdout": (res.stdout + res2.stdout).encode(), "stderr": (res.stderr + res2.stderr).encode()})
    basic = base64.b64encode(f"alice:{URL_PASSWORD}".encode())
    for secret in (HEADER_SECRET.encode(), TOKEN_SECRET.encode(), URL_PASSWORD.encode(), basic,
                   *(v.encode() for v in SECRETS.values())):
        found = [name for name, blob in blobs.items() if secret in blob]
        assert not found, f"{secret!r} found in {found}"
