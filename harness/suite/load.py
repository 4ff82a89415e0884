"""Reading a suite: built-in names, files (regular, size-capped, UTF-8 TOML) and their includes."""

from __future__ import annotations

import difflib
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from harness.store import PathProblem, read_regular
from harness.suite.messages import Loc, SuiteError, format_loc
from harness.suite.validate import Suite, validate_raw

BUILTIN_PREFIX = "builtin:"


MAX_SUITE_BYTES = 1 << 20  # a suite is a page of TOML; 1 MiB is far beyond any


MAX_INCLUDE_DEPTH = 32  # a chain of base suites this long is a loop in disguise, not a design


MAX_NESTING = 16  # tables and arrays inside each other; a suite's deepest key is 5 levels down


def builtin_suites_dir() -> Path:
    packaged = resources.files("harness") / "builtin_suites"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "suites"  # source checkout


def resolve_suite_path(spec: str, relative_to: Path | None = None) -> Path:
    """`builtin:smoke`, a bare built-in name, or a path (relative to `relative_to`)."""
    if spec.startswith(BUILTIN_PREFIX):
        return builtin_suites_dir() / f"{spec.removeprefix(BUILTIN_PREFIX)}.toml"
    path = Path(spec).expanduser()
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    if not path.exists() and relative_to is None and "/" not in spec and not spec.endswith(".toml"):
        builtin = builtin_suites_dir() / f"{spec}.toml"
        if builtin.exists():
            return builtin
    return path


def load_suite(spec: str | Path) -> Suite:
    path = resolve_suite_path(str(spec))
    if not path.exists() and "/" not in str(spec) and not str(spec).endswith(".toml"):
        names = sorted(p.stem for p in builtin_suites_dir().glob("*.toml"))
        close = difflib.get_close_matches(str(spec).removeprefix(BUILTIN_PREFIX), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SuiteError([(str(spec), "", f"no suite file and no built-in suite of this name; {hint}"
                                          f"built-in suites: {', '.join(names)}")])
    texts: dict[str, str] = {}
    raw, origins = read_with_includes(path, texts, chain=())
    return validate_raw(raw, path, texts, origins)


def read_with_includes(
    path: Path, texts: dict[str, str], chain: tuple[Path, ...]
) -> tuple[dict[str, Any], dict[Loc, str]]:
    name = str(path)
    where = f"{chain[-1]}" if chain else name
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        raise SuiteError([(where, "include" if chain else "", f"{path}: a symbolic link loop")]) from None
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise SuiteError([(name, "include", f"include cycle: {cycle}")])
    if len(chain) >= MAX_INCLUDE_DEPTH:
        raise SuiteError([(where, "include", f"include chain deeper than {MAX_INCLUDE_DEPTH} files "
                           f"(from {chain[0]})")])
    try:
        data = read_regular(path, MAX_SUITE_BYTES)
    except PathProblem as exc:
        problem = str(exc)
        if problem == "not found":
            raise SuiteError([(where, "include" if chain else "", f"suite file not found: {path}")]) from None
        raise SuiteError([(name, "", f"cannot read suite file: {problem}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError([(name, "", f"cannot read suite file: not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})")]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([(name, "", f"invalid TOML: {exc}")]) from None
    except RecursionError:
        raise SuiteError([(name, "", f"invalid suite: tables or arrays nested too deeply (a suite "
                           f"nests at most {MAX_NESTING} levels)")]) from None
    deep = _too_deep(raw)
    if deep is not None:
        raise SuiteError([(name, format_loc(deep), f"nested more than {MAX_NESTING} levels deep: "
                           "no suite key is")])
    texts[name] = text
    include = raw.pop("include", None)
    includes = [include] if isinstance(include, str) else include or []
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise SuiteError([(name, "include", "expected a suite path or a list of suite paths")])
    merged: dict[str, Any] = {}
    origins: dict[Loc, str] = {}
    for spec in includes:
        base_path = resolve_suite_path(spec, relative_to=path.parent)
        base, base_origins = read_with_includes(base_path, texts, (*chain, resolved))
        merged = _deep_merge(merged, base)
        origins.update(base_origins)
    for loc in _leaf_locs(raw):
        origins = {k: v for k, v in origins.items() if k[: len(loc)] != loc}
        origins[loc] = name
    return _deep_merge(merged, raw), origins


def _too_deep(raw: Any) -> Loc | None:
    """The key path of a value nested deeper than MAX_NESTING, or None (iterative: no recursion)."""
    stack: list[tuple[Any, Loc]] = [(raw, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_NESTING:
            return loc[:MAX_NESTING + 1]
        if isinstance(value, dict):
            stack.extend((v, (*loc, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in enumerate(value))
    return None


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; everything else (arrays of tables too) is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _leaf_locs(raw: dict[str, Any], prefix: Loc = ()) -> list[Loc]:
    locs: list[Loc] = []
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            locs.extend(_leaf_locs(value, (*prefix, key)))
        else:
            locs.append((*prefix, key))
    return locs
