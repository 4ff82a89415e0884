"""The run directory: everything a run produced, enough to reproduce every number.

    RUN_DIR/
      manifest.json      suite text and hash, resolved config, environment, decoder weights and
                         facts, run status and phase times (atomic rewrites)
      cases.jsonl        every case with its input hash and reference
      results.jsonl      append-only records (harness/records.py), flushed and fsynced one by one
      images/<decoder>/<case>.png   decoded outputs (8-bit, lossless)
      references/<key>.png          comparison references
      logs/<decoder>.log            worker stdout/stderr

    files.py    containment, regular files, atomic writes, the store's errors
    schema.py   what readers rely on, checked once
    reader.py   read_run: the one validated loader
    writer.py   RunStore: the one writer (lock, manifest, append)

The format is harness/records.py (docs/run-format.md); runs are read as rows by harness/view.
"""

from harness.records import (
    CASES,
    INFRASTRUCTURE_ERROR,
    MANIFEST,
    RESULTS,
    RUN_FORMAT,
    SUITE_HASH_DIGITS,
)
from harness.store.files import (
    ENVIRONMENT_ERRNOS,
    STOPPING_ERRNOS,
    EnvironmentFailure,
    PathProblem,
    RunDirError,
    StoreError,
    atomic_write_text,
    errno_text,
    file_problem,
    inside,
    kind_of,
    link_or_copy,
    now_iso,
    read_regular,
    stored_path_problem,
    writable_dir,
    writable_file,
)
from harness.store.reader import (
    NonFinite,
    RunData,
    loads_finite,
    read_jsonl,
    read_manifest,
    read_records,
    read_run,
)
from harness.store.schema import RECORD_KINDS
from harness.store.writer import RunStore

__all__ = [
    "CASES",
    "ENVIRONMENT_ERRNOS",
    "INFRASTRUCTURE_ERROR",
    "MANIFEST",
    "RECORD_KINDS",
    "RESULTS",
    "RUN_FORMAT",
    "STOPPING_ERRNOS",
    "SUITE_HASH_DIGITS",
    "EnvironmentFailure",
    "NonFinite",
    "PathProblem",
    "RunData",
    "RunDirError",
    "RunStore",
    "StoreError",
    "atomic_write_text",
    "errno_text",
    "file_problem",
    "inside",
    "kind_of",
    "link_or_copy",
    "loads_finite",
    "now_iso",
    "read_jsonl",
    "read_manifest",
    "read_records",
    "read_regular",
    "read_run",
    "stored_path_problem",
    "writable_dir",
    "writable_file",
]
