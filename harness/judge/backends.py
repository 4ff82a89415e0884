"""Start the judge backend a [judge] table names (Gemini or a local VLM)."""

from __future__ import annotations

from decoders.plugins import unavailable_reason
from harness.judge.config import JudgeConfig
from harness.judge.protocol import Backend, BackendUnavailable


def create_backend(config: JudgeConfig) -> Backend:
    """Start the configured backend; raises BackendUnavailable quickly when it cannot (any import
    or load failure: the judge's requests are recorded unavailable, the run goes on)."""
    try:
        if config.backend == "gemini":
            from harness.judge.gemini import GeminiBackend

            return GeminiBackend.create(config)
        from harness.judge.local_vlm import LocalVLMBackend

        return LocalVLMBackend.load(config)
    except BackendUnavailable:
        raise
    except Exception as exc:
        raise BackendUnavailable(unavailable_reason(exc)) from None
