"""Start the judge backend a [judge] table names (Gemini or a local VLM)."""

from __future__ import annotations

from harness.judge.config import JudgeConfig
from harness.judge.protocol import Backend


def create_backend(config: JudgeConfig) -> Backend:
    """Start the configured backend; raises BackendUnavailable quickly when it cannot."""
    if config.backend == "gemini":
        from harness.judge.gemini import GeminiBackend

        return GeminiBackend.create(config)
    from harness.judge.local_vlm import LocalVLMBackend

    return LocalVLMBackend.load(config)
