"""The run format as typed records: one place to learn what a run directory holds.

(The typed records of results.jsonl follow in this module.)
"""

from __future__ import annotations

RUN_FORMAT = 1  # manifest.json "format": a reader refuses any other
MANIFEST = "manifest.json"
RESULTS = "results.jsonl"
CASES = "cases.jsonl"
SUITE_HASH_DIGITS = 16  # records name their suite by this many hex digits of its sha256
# A failure of the environment is not a decoder's result: a unit it stops is recorded with this
# status and the cause, `run --resume` runs it again, and readers never count it against the
# decoder. (A decoder's own failures — error, crashed, timeout, oom, invalid_output — stay recorded;
# `run --resume --retry-failed` runs them again on request.)
INFRASTRUCTURE_ERROR = "infrastructure_error"

Size = tuple[int, int]  # (width, height) in pixels; stored as a JSON list [w, h]
DecodeKey = tuple[str, str]  # (decoder id, case id): what one decode record is the record of
