"""Secret-bearing settings of the LLM backends: taken from environment variables, stored only by name.

Three kinds of secrets reach an LLM backend: the API key (``pipeline.llm.keys``, environment only), auth-like
HTTP headers (``Proxy-Authorization``, ``X-Auth-Token``, ...) and credentials inside ``base_url``
(``https://user:pass@host``). Config values end up in Prefect flow-run parameters, ``manifest.json`` and the stage
fingerprints, so a secret value is never a config value:

- ``backend.options.headers_env: {"Proxy-Authorization": "MY_PROXY_AUTH"}`` names the variable of a header;
- ``backend.options.base_url_env: MY_BASE_URL`` names a variable that holds the whole URL (credentials included).

A secret written straight into ``headers`` or ``base_url`` is refused (:func:`refuse_secret_values`), except on
the ``shine`` command line, where :func:`move_secrets_to_env` moves it into a variable of this process (the flow
runs in-process) before anything else sees it. :class:`Scrubber` replaces the values in text that goes to the
ledger, errors and logs.

>>> is_secret_header("Proxy-Authorization"), is_secret_header("X-Request-Source")
(True, False)
>>> strip_userinfo("https://bob:pw@proxy.example:8443/v1")
('https://proxy.example:8443/v1', 'bob:pw')
>>> redact_url("https://bob:pw@proxy.example/v1")
'https://***@proxy.example/v1'
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.errors import ConfigError

__all__ = ["is_secret_header", "strip_userinfo", "redact_url", "redact_text", "move_secrets_to_env",
           "refuse_secret_values", "env_value", "Scrubber", "SECRET_ENV_PREFIX"]

#: prefix of the variables the CLI creates for secrets given on its command line
SECRET_ENV_PREFIX = "SHINE_SECRET_"

_SECRET_HEADER = re.compile(r"(auth|token|secret|key|cookie|password|signature|credential)", re.I)
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<info>[^/\s@?#]+)@", re.I)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}", re.I)


def is_secret_header(name: str) -> bool:
    """Whether an HTTP header carries a credential (Authorization, X-Api-Key, anything with auth/token/key...)."""
    return bool(_SECRET_HEADER.search(name))


def strip_userinfo(url: str) -> tuple[str, str]:
    """``url`` without its ``user:password@`` part, and that part ("" when there is none)."""
    m = _USERINFO.match(url.strip())
    if not m:
        return url, ""
    return m.group("scheme") + url.strip()[m.end():], m.group("info")


def redact_url(url: str) -> str:
    """``url`` with any userinfo replaced by ``***`` (safe for logs and manifests)."""
    return _USERINFO.sub(lambda m: m.group("scheme") + "***@", url)


def redact_text(text: str) -> str:
    """``text`` with URL userinfo and ``Bearer``/``Basic`` credentials replaced (for error messages)."""
    return _BEARER.sub(lambda m: m.group(1) + " ***", redact_url(text))


def env_value(var: str, what: str) -> str:
    """The value of environment variable ``var`` (named by setting ``what``); missing is a ConfigError."""
    value = os.environ.get(var, "")
    if not value:
        raise ConfigError(f"{what} names the environment variable {var}, which is not set: export {var}=... "
                          f"in the shell that runs shine (or the worker's environment)")
    return value


def _env_name(path: str) -> str:
    # deterministic per setting (not per value): reruns keep the same config, hence the same stage fingerprint
    slug = re.sub(r"[^A-Z0-9]+", "_", path.upper()).strip("_")
    return f"{SECRET_ENV_PREFIX}{slug}_{hashlib.sha256(path.encode()).hexdigest()[:6].upper()}"


def move_secrets_to_env(overrides: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``--set`` overrides with secret-bearing LLM values moved into environment variables.

    ``backend.options.headers`` entries with auth-like names go to ``headers_env`` and a ``base_url`` with
    credentials goes to ``base_url_env`` (the cleaned URL stays in ``base_url`` for display); the values are
    written into ``environ`` (default ``os.environ``: the flow runs in this process). The input is not changed.
    """
    env = os.environ if environ is None else environ
    options = (overrides.get("backend") or {}).get("options")
    if not isinstance(options, dict):
        return overrides
    options = dict(options)
    headers = options.get("headers")
    if isinstance(headers, dict):
        keep: dict[str, Any] = {}
        moved = dict(options.get("headers_env") or {})
        for name, value in headers.items():
            if is_secret_header(str(name)) and isinstance(value, str) and value:
                var = _env_name(f"headers.{name}")
                env[var] = value
                moved[str(name)] = var
            else:
                keep[name] = value
        options["headers"] = keep
        if moved:
            options["headers_env"] = moved
    url = options.get("base_url")
    if isinstance(url, str) and strip_userinfo(url)[1]:
        var = _env_name("base_url")
        env[var] = url
        options["base_url"] = strip_userinfo(url)[0]
        options["base_url_env"] = var
    return {**overrides, "backend": {**overrides["backend"], "options": options}}


def refuse_secret_values(headers: Mapping[str, Any], base_url: str) -> None:
    """Raise ConfigError (one line) for a secret written as a config value instead of a variable's name."""
    for name in headers:
        if is_secret_header(str(name)):
            raise ConfigError(
                f"backend.options.headers[{name!r}] carries a secret, and config values are stored in flow "
                f"parameters and manifests: put it in an environment variable and set "
                f"backend.options.headers_env={{{name!r}: 'VARIABLE_NAME'}} (the shine CLI does this for --set)")
    if strip_userinfo(base_url)[1]:
        raise ConfigError(
            f"backend.options.base_url {redact_url(base_url)} holds credentials, and config values are stored in "
            f"flow parameters and manifests: put the whole URL in an environment variable and set "
            f"backend.options.base_url_env=VARIABLE_NAME (the shine CLI does this for --set)")


class Scrubber:
    """Replaces known secret values (and URL userinfo, Bearer tokens) in text bound for ledgers, errors, logs."""

    def __init__(self, values: Iterable[str | None]) -> None:
        # longest first so a secret that contains another is replaced whole
        self.values = sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, "***")
        return redact_text(text)
