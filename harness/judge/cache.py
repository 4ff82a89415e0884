"""On-disk verdicts: a question asked once is never paid for again.

The key hashes everything that determines the question: the two images'
pixel hashes in the order shown (so the order is part of the key), the
reference image's hash for reference criteria, the case's caption, the
judge model and backend, the criterion and its prompt-template version, the
resize policy and the generation settings. Entries hold the final outcome
(`ok` with the screen verdict, or `invalid`); `failed` is never cached, so
it is asked again next time. Files live under <cache dir>/judge/ and hold no
secret: only the answer and the key fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.sources.cache import cache_key
from harness.store import atomic_write_text


class VerdictCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key(fields: dict[str, Any]) -> str:
        return cache_key("judge-verdict", fields)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored outcome, or None when missing or unreadable (the next answer overwrites it)."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        valid = (isinstance(entry, dict) and entry.get("status") in ("ok", "invalid")
                 and entry.get("verdict") in ("A", "B", "tie", None) and isinstance(entry.get("reason"), str))
        return entry if valid else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(entry, sort_keys=True, indent=1))
