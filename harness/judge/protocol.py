"""What every judge backend shares: the protocol, its errors, the reply and secret handling.

A backend raises TransientError for what a retry may fix (429, 5xx, timeouts,
lost connections), RequestFailed for what it will not (a bad request, a
refused key: `fatal` stops the requests not yet sent) and BackendUnavailable
when it cannot start at all (package, key or weights missing). Whether a
reply is a valid answer is decided by the caller (prompts.parse_answer).
The backends themselves (gemini.py, local_vlm.py) import this module; only
backends.py, which starts the configured one, imports them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from harness.errors import DecoderbenchError
from harness.judge.prompts import Prompt

API_KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


class BackendUnavailable(DecoderbenchError, RuntimeError):
    """The backend cannot start; the message says what is missing and how to get it."""


class TransientError(DecoderbenchError, RuntimeError):
    def __init__(self, message: str, failure: str, retry_after_s: float | None = None,
                 maybe_billed: bool = False) -> None:
        super().__init__(message)
        self.failure = failure  # short category: rate_limited, server_error, timeout, connection
        self.retry_after_s = retry_after_s
        self.maybe_billed = maybe_billed  # the server may have done (and charged) the work


class RequestFailed(DecoderbenchError, RuntimeError):
    def __init__(self, message: str, failure: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.failure = failure
        self.fatal = fatal


@dataclass(frozen=True)
class Reply:
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None  # thinking tokens included: they are billed as output
    finish: str | None = None


class Backend(Protocol):
    judge_model: str
    priced: bool  # False: local weights, no money spent
    max_concurrency: int | None  # None: the config's concurrency
    secrets: tuple[str, ...]  # never written anywhere; redacted from every recorded message

    def ask(self, prompt: Prompt) -> Reply: ...


def api_key_from_env() -> str:
    for name in API_KEY_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    raise BackendUnavailable(
        "no Gemini API key: set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment; "
        "get a key at https://aistudio.google.com/apikey"
    )


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
