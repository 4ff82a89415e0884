"""What a run may spend: a cap on backend calls and a cap on estimated cost.

Every call reserves its worst-case estimate before it is sent (input tokens
estimated from the text and a fixed count per image, plus max_output_tokens
of output) and settles at the cost of the tokens the backend reports. A call
that would exceed a cap is not sent. Caps are per run directory: a resumed
run or a re-judge starts from what the run's records already spent.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from harness.judge.config import JudgeConfig
from harness.judge.prompts import Prompt

CHARS_PER_TOKEN = 4  # a conservative rule of thumb for English prompt text


@dataclass(frozen=True)
class Pricing:
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    tokens_per_image: int
    max_output_tokens: int

    @classmethod
    def of(cls, config: JudgeConfig, priced: bool) -> Pricing:
        if not priced:
            return cls(0.0, 0.0, config.tokens_per_image, config.max_output_tokens)
        return cls(config.price_input_per_mtok, config.price_output_per_mtok, config.tokens_per_image,
                   config.max_output_tokens)

    def input_tokens(self, prompt: Prompt) -> int:
        return math.ceil(prompt.text_chars / CHARS_PER_TOKEN) + prompt.image_count * self.tokens_per_image

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_usd_per_mtok + output_tokens * self.output_usd_per_mtok) / 1e6

    def estimate(self, prompt: Prompt) -> float:
        """Worst-case cost of one call of this prompt."""
        return self.cost(self.input_tokens(prompt), self.max_output_tokens)


class Budget:
    """Thread-safe accounting of calls made and money spent (and reserved by calls in flight)."""

    def __init__(self, max_requests: int, cost_cap_usd: float, requests: int = 0,
                 spent_usd: float = 0.0) -> None:
        self.max_requests, self.cost_cap_usd = max_requests, cost_cap_usd
        self.requests, self.spent_usd = requests, spent_usd
        self._reserved_usd = 0.0
        self._lock = threading.Lock()

    def reserve(self, estimate_usd: float) -> str | None:
        """Count one call and reserve its estimate; or say which cap stops it."""
        with self._lock:
            if self.requests >= self.max_requests:
                return f"max_requests ({self.max_requests}) reached"
            if self.spent_usd + self._reserved_usd + estimate_usd > self.cost_cap_usd:
                return (f"cost cap ${self.cost_cap_usd:.2f} reached (spent ${self.spent_usd:.4f}, "
                        f"in flight ${self._reserved_usd:.4f}, next call up to ${estimate_usd:.4f})")
            self.requests += 1
            self._reserved_usd += estimate_usd
            return None

    def settle(self, estimate_usd: float, cost_usd: float) -> None:
        with self._lock:
            self._reserved_usd -= estimate_usd
            self.spent_usd += cost_usd
