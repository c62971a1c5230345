"""Llama 3 Instruct on any OpenAI-compatible server: vLLM, Ollama, llama.cpp server, TGI, LM Studio.

Start one, then point ``base_url`` at it (the model name is the server's):

    # vLLM (GPU): serves meta-llama/Meta-Llama-3-8B-Instruct on :8000
    vllm serve meta-llama/Meta-Llama-3-8B-Instruct --port 8000 --max-model-len 4096 --seed 0
    shine build-negatives ... --backend llama3 --model meta-llama/Meta-Llama-3-8B-Instruct \\
        --set backend.options.base_url=http://127.0.0.1:8000/v1

    # Ollama
    ollama pull llama3:8b-instruct-q4_K_M && ollama serve        # listens on :11434
    shine build-negatives ... --backend llama3 --model llama3:8b-instruct-q4_K_M \\
        --set backend.options.base_url=http://127.0.0.1:11434/v1

    # llama.cpp
    llama-server -m Meta-Llama-3-8B-Instruct.Q4_K_M.gguf --port 8080 -np 8 -c 16384
    shine build-negatives ... --backend llama3 --model llama3 \\
        --set backend.options.base_url=http://127.0.0.1:8080/v1

No key is needed unless the server asks for one (``LLAMA3_API_KEY``, else ``OPENAI_API_KEY``, is sent if set).
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.llm.config import LLMConfig
from pipeline.llm.openai import OpenAIProvider

__all__ = ["Llama3Provider", "DEFAULT_LLAMA3_URL"]

#: vLLM's default address
DEFAULT_LLAMA3_URL = "http://127.0.0.1:8000/v1"


class Llama3Provider(OpenAIProvider):
    """OpenAI chat completions against a self-hosted server; no batch API, ``max_tokens`` (what servers know)."""

    name = "llama3"
    supports_batch = False
    max_tokens_field = "max_tokens"

    def __init__(self, cfg: LLMConfig, api_key: str | None) -> None:
        super().__init__(replace(cfg, base_url=cfg.base_url or DEFAULT_LLAMA3_URL), api_key)
