"""Suite files: TOML data → a validated, hashed `Suite`.

A suite says what to feed (source, resolutions, seeds, noise levels), which decoders and metrics
to run, how to time them and which gates to apply. It is data, never code: decoders, encoders and
metrics are named through their registries. Every problem is reported with the file, the key
path (`decoder[2].params.tile_size`, indices from 0) and what was expected; all problems of a
file are reported at once ([docs/suites.md](../../docs/suites.md)).

    schema.py    the tables and keys (pydantic models, strict); sources.py: the [source] table;
                 fields.py: limits and value types
    load.py      built-in names, files and includes → merged data
    validate.py  schema + checks → `Suite`; command-line overrides
    checks.py    registry names, params, sizes, repeated values
    messages.py  problems in the file's words (`FILE: key.path: message`)
"""

from harness.suite.fields import MAX_SIDE
from harness.suite.load import (
           BUILTIN_PREFIX,
           MAX_SUITE_BYTES,
           builtin_suites_dir,
           load_suite,
           resolve_suite_path,
)
from harness.suite.messages import SuiteError
from harness.suite.schema import DecoderEntry, SuiteModel, Timing
from harness.suite.validate import OverrideError, Suite, validate_raw

__all__ = ["BUILTIN_PREFIX", "MAX_SIDE", "MAX_SUITE_BYTES", "DecoderEntry", "OverrideError", "Suite",
           "SuiteError", "SuiteModel", "Timing", "builtin_suites_dir", "load_suite", "resolve_suite_path",
           "validate_raw"]
