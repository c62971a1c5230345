"""API keys: from environment variables, else the system keyring (when the ``keyring`` package is installed).

Keys are handed to the SDK client and nowhere else: not to the config, the cache, the ledger, the Parquet
tables, the manifest or the logs.
"""

from __future__ import annotations

import os

from pipeline.errors import ConfigError

__all__ = ["KEY_VARIABLES", "get_api_key"]

#: the variables read per provider, in order; llama3 servers usually need no key
KEY_VARIABLES: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "llama3": ("LLAMA3_API_KEY", "OPENAI_API_KEY"),
}

_KEYRING_SERVICE = "shine"


def _from_keyring(name: str) -> str | None:
    try:
        import keyring
    except ImportError:
        return None
    try:
        return keyring.get_password(_KEYRING_SERVICE, name)
    except Exception:  # noqa: BLE001 - a broken keyring backend must not hide the clear error below
        return None


def get_api_key(provider: str, required: bool = True) -> str | None:
    """The key for ``provider``; a missing required key is a ConfigError naming the variables to set."""
    names = KEY_VARIABLES[provider]
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    for name in names:
        value = _from_keyring(name)
        if value:
            return value
    if required:
        hint = " or ".join(names)
        raise ConfigError(f"backend {provider!r} needs an API key: set the environment variable {hint} "
                          f"(or store it with `keyring set {_KEYRING_SERVICE} {names[0]}`)")
    return None
