"""Google Gemini through the google-genai client (`pip install 'decoderbench[judge]'`).

One generateContent call per request: the prompt's text and inline PNG
parts in reading order, JSON output constrained by the answer schema. The
client's own retries are off (no retry_options): retry.py owns back-off and
the request count. The key comes from the environment and is given to the
client only; it is never part of anything this module returns.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from harness.judge.config import JudgeConfig
from harness.judge.media import JudgeImage
from harness.judge.prompts import ANSWER_SCHEMA, Prompt
from harness.judge.protocol import (
    BackendUnavailable,
    Reply,
    RequestFailed,
    TransientError,
    api_key_from_env,
    redact,
)

FATAL_CODES = {401: "auth", 403: "auth", 404: "not_found"}  # every further request would fail too


def _http_exceptions() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeouts, transport errors) of the HTTP libraries google-genai may use: httpx or its fork httpx2."""
    timeouts, transport = [], []
    for module_name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transport.append(module.TransportError)
    return tuple(timeouts), tuple(transport)


TIMEOUTS, TRANSPORT_ERRORS = _http_exceptions()


class GeminiBackend:
    priced = True
    max_concurrency = None

    def __init__(self, client: Any, config: JudgeConfig, key: str) -> None:
        from google.genai import types

        self.client, self.config, self.types = client, config, types
        self.judge_model = config.model
        self.secrets = (key,)
        thinking = None
        if config.thinking_level is not None:
            thinking = types.ThinkingConfig(thinking_level=config.thinking_level.upper())
        self.generation = types.GenerateContentConfig(
            temperature=config.temperature, max_output_tokens=config.max_output_tokens,
            candidate_count=1, response_mime_type="application/json",
            response_json_schema=ANSWER_SCHEMA, thinking_config=thinking,
        )

    @classmethod
    def create(cls, config: JudgeConfig) -> GeminiBackend:
        try:
            from google import genai
            from google.genai import types
        except ImportError:
            raise BackendUnavailable(
                "the gemini judge needs the google-genai package: pip install 'decoderbench[judge]'"
            ) from None
        key = api_key_from_env()
        options = types.HttpOptions(base_url=config.base_url, api_version=config.api_version,
                                    timeout=max(1, round(config.timeout_s * 1000)))
        try:
            return cls(genai.Client(api_key=key, http_options=options), config, key)
        except Exception as exc:
            raise BackendUnavailable(f"cannot start the Gemini client: {redact(str(exc), (key,))}") from None

    def ask(self, prompt: Prompt) -> Reply:
        from google.genai import errors

        parts = [self.types.Part.from_bytes(data=p.png, mime_type="image/png") if isinstance(p, JudgeImage)
                 else self.types.Part.from_text(text=p) for p in prompt.parts]
        try:
            response = self.client.models.generate_content(
                model=self.config.model, contents=[self.types.Content(role="user", parts=parts)],
                config=self.generation,
            )
        except errors.APIError as exc:
            raise _classify(exc) from None
        except TIMEOUTS:
            raise TransientError(f"no answer within {self.config.timeout_s:g} s", "timeout",
                                 maybe_billed=True) from None
        except TRANSPORT_ERRORS as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}: {exc}", "connection") from None
        except errors.UnknownApiResponseError as exc:
            raise RequestFailed(f"unreadable response: {str(exc)[:200]}", "bad_response") from None
        return _reply(response)


def _reply(response: Any) -> Reply:
    usage = response.usage_metadata
    input_tokens = output_tokens = None
    if usage is not None:
        input_tokens = usage.prompt_token_count
        output_tokens = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
    candidates = response.candidates or []
    if not candidates:
        feedback = response.prompt_feedback
        blocked = getattr(feedback, "block_reason", None) if feedback is not None else None
        return Reply("", input_tokens, output_tokens, f"no candidate (blocked: {blocked})" if blocked
                     else "no candidate")
    candidate = candidates[0]
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    finish = candidate.finish_reason.name if candidate.finish_reason is not None else None
    return Reply(text, input_tokens, output_tokens, finish)


def _classify(exc: Any) -> TransientError | RequestFailed:
    code = int(exc.code or 0)
    message = f"HTTP {code} {exc.status or ''}: {exc.message or ''}".strip()
    if code == 429:
        return TransientError(message, "rate_limited", retry_after_s=_retry_delay(exc.details))
    if code == 408 or code >= 500:
        return TransientError(message, "server_error")
    if code in FATAL_CODES:
        return RequestFailed(message, FATAL_CODES[code], fatal=True)
    return RequestFailed(message, "client_error")


def _retry_delay(details: Any) -> float | None:
    """The server's RetryInfo ("retryDelay": "12.5s") of a 429, if it sent one."""
    try:
        entries = details["error"]["details"]
    except (KeyError, TypeError):
        return None
    for entry in entries if isinstance(entries, list) else []:
        delay = entry.get("retryDelay") if isinstance(entry, dict) else None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)s", delay or "")
        if match:
            return float(match.group(1))
    return None
