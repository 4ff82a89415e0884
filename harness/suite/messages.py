"""Suite problems in the words of the file: `FILE: key.path[2]: what was expected`, all at once."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from harness.errors import DecoderbenchError
from harness.suite.schema import SuiteModel
from harness.suite.sources import SOURCE_KINDS

Loc = tuple[str | int, ...]


Problem = tuple[str, str, str]  # (file, key path, message)


class SuiteError(DecoderbenchError):
    """One or more problems in a suite; str() gives one 'file: key: message' per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{f}: {k}: {m}" if k else f"{f}: {m}" for f, k, m in problems))


def error_loc(error: dict[str, Any]) -> Loc:
    """Key path of a schema error: the source's kind tag is not a key of the file."""
    loc = tuple(error["loc"])
    if loc[:1] == ("source",) and len(loc) > 1 and loc[1] in SOURCE_KINDS:
        loc = (loc[0], *loc[2:])
    if loc[:1] == ("summary",) and len(loc) > 2 and loc[2] in ("list", "table"):  # a group's form
        loc = (*loc[:2], *loc[3:])
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "kind")
    return loc


class Locator:
    """Names the file a key came from (the includer or an included base suite)."""

    def __init__(self, top: str, origins: dict[Loc, str]) -> None:
        self.top, self.origins = top, origins

    def problem(self, loc: Loc, message: str) -> Problem:
        for cut in range(len(loc), 0, -1):
            if loc[:cut] in self.origins:
                return (self.origins[loc[:cut]], format_loc(loc), message)
        return (self.top, format_loc(loc), message)


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def error_message(error: dict[str, Any], known_keys: list[str]) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        table = ".".join(str(part) for part in error["loc"][:-1] if isinstance(part, str))
        elsewhere = [path for path in _SCHEMA_PATHS.get(key, []) if path.rpartition(".")[0] != table]
        if 0 < len(elsewhere) <= 2:  # a real key in the wrong table: say where it goes
            return f"unknown key {key!r} here; it belongs in {' or '.join(elsewhere)}"
        close = difflib.get_close_matches(key, [k for k in known_keys if k != key], n=1)
        hint = f"did you mean {close[0]!r}?" if close else "not a key of this table"
        return f"unknown key {key!r} ({hint})"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "union_tag_invalid":
        return f"expected one of {error['ctx']['expected_tags']}, got {error['ctx']['tag']!r}"
    if kind == "union_tag_not_found":
        return f"required key is missing (one of {', '.join(map(repr, SOURCE_KINDS))})"
    for prefix, replacement in _PHRASES:
        if msg.startswith(prefix):
            msg = replacement + msg.removeprefix(prefix)
            break
    return f"{msg}, got {error['input']!r}"


_PHRASES = (
    ("Input should be ", "expected "),
    ("String should match pattern ", "expected a string matching pattern "),
    ("String should have ", "expected a string with "),
    ("List should have ", "expected a list with "),
    ("Field required", "required key is missing"),
)


def _field_names(model: type[BaseModel]) -> list[str]:
    names: list[str] = []
    for name, field in model.model_fields.items():
        names.append(name)
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                names.extend(_field_names(candidate))
    return sorted(set(names))


def _field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, list[str]]:
    """Every key of the schema → the dotted paths where it is valid (`repeats` → timing.repeats)."""
    paths: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.setdefault(name, []).append(path)
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                for key, found in _field_paths(candidate, f"{path}.").items():
                    paths.setdefault(key, []).extend(p for p in found if p not in paths[key])
    return paths


_SCHEMA_KEYS = _field_names(SuiteModel)


_TOP_KEYS = sorted(SuiteModel.model_fields)


def schema_message(error: dict[str, Any], raw: dict[str, Any]) -> str:
    """A schema error's message; at the top level, spelling hints come from the top-level keys, and
    a missing key names the misspelt one the file holds instead (`[[decoders]]` for `[[decoder]]`)."""
    loc = error["loc"]
    top = len(loc) == 1
    message = error_message(error, _TOP_KEYS if top else _SCHEMA_KEYS)
    if top and error["type"] == "missing":
        unknown = [key for key in raw if key not in SuiteModel.model_fields and key != "include"]
        close = difflib.get_close_matches(str(loc[0]), unknown, n=1)
        if close:
            message += f" (the file has {close[0]!r}: did you mean {loc[0]!r}?)"
    return message


_SCHEMA_PATHS = _field_paths(SuiteModel)
