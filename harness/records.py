"""The run format as typed records: one place to learn what a run directory holds.

Every line of results.jsonl is one of the records below, told apart by `kind`; cases.jsonl holds
one `CaseLine` per case and manifest.json one `Manifest`. They are TypedDicts: at run time plain
dicts (the JSON on disk is the dict, byte for byte), to a type checker and a reader the keys each
kind has, what they mean and which are always there. Writers build them (runner, workers/sink.py,
workers/worker.py, evaluate.py, judge/phase.py, sweep.py, tests/support/synthetic_runs.py);
readers take them from `harness.store.read_run` and filter them with `decodes()`, `metrics()`,
... The loader's checks (harness/store/schema.py) must agree with these, and docs/run-format.md's
tables are generated from them (`python -m harness.records`); tests/unit/test_records.py holds
all three together.
"""

import sys
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Literal, NotRequired, Required, TypedDict, TypeGuard, Union

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


class Doc(str):
    """What a key means: the text of its row in docs/run-format.md."""


SizeList = list[int]  # [width, height] as stored
Object = dict[str, Any]


class _Stamped(TypedDict, total=False):
    time: Annotated[str, Doc("when the record was appended (ISO 8601, UTC, ms); the store adds it")]
    suite_hash: Annotated[str, Doc("the first 16 hex digits of the run's suite sha256: a record of "
                                   "another suite's run is told apart by it; the store adds it")]


class _Placed(_Stamped, total=False):
    placement: Annotated[Object, Doc("where the worker ran: host, gpu_index, gpu_name, "
                                     "cuda_visible_devices")]
    unit: Annotated[str, Doc("the executor's unit (decoder, comparison size, shard) that ran it")]
    slot: Annotated[str, Doc("the slot the unit ran on: the device, a GPU, a Ray actor")]


class LoadRecord(_Placed, total=False):
    """A worker loaded its decoder, or could not (one per worker: a decoder may have several)."""

    kind: Required[Annotated[Literal["load"], Doc("`load`")]]
    decoder: Required[Annotated[str, Doc("the decoder's id (its label in the suite, else its name)")]]
    status: Required[Annotated[str, Doc("`ok`, or why it did not load: unavailable, error, crashed, "
                                        "timeout, oom, infrastructure_error")]]
    message: Annotated[str, Doc("what went wrong, in one line (a failed load)")]
    traceback: Annotated[str | None, Doc("the worker's traceback excerpt (a failed load)")]
    pid: Annotated[int, Doc("the worker's process id")]
    spawn_to_ready_ms: Annotated[float, Doc("worker start → decoder loaded: process, imports, load")]
    import_ms: Annotated[float, Doc("the imports of the decoder's module in the worker")]
    load_ms: Annotated[float, Doc("the decoder's load(): weights read and moved to the device")]
    weights: Annotated[Object, Doc("the weight files the decoder read, with their sha256")]
    facts: Annotated[Object, Doc("what the decoder reports about itself (architecture, dtype, ...)")]
    device: Annotated[Object, Doc("device, threads; on CUDA gpu_name, capability, total_memory_bytes, "
                                  "cuda_runtime")]
    torch_state: Annotated[Object, Doc("torch's global settings in the worker (TF32, cudnn, threads)")]


class DecodeRecord(_Placed, total=False):
    """One decoder × case: decoded (`ok`) or the failure that happened; exactly one per unit."""

    kind: Required[Annotated[Literal["decode"], Doc("`decode`")]]
    decoder: Required[Annotated[str, Doc("the decoder's id")]]
    case: Required[Annotated[str, Doc("the case's id (cases.jsonl)")]]
    status: Required[Annotated[str, Doc("ok, error, oom, timeout, crashed, invalid_output, unavailable, "
                                        "input_error or infrastructure_error")]]
    message: Annotated[str | None, Doc("what went wrong, in one line")]
    traceback: Annotated[str | None, Doc("the worker's traceback excerpt, where there is one")]
    batch_size: Annotated[int, Doc("cases decoded by the same call")]
    batch_id: Annotated[str, Doc("the call's id (`pid:first case`): records of one call share it")]
    request_size: Annotated[SizeList, Doc("the size the decoder was asked for: native, or the "
                                          "comparison size")]
    output_size: Annotated[SizeList, Doc("the comparison size [w, h]")]
    native_size: Annotated[SizeList, Doc("the size the decoder returned, before resampling")]
    resampled: Annotated[Object | None, Doc("`from` (native size) and `method`, where the output was "
                                            "resampled to the comparison size")]
    worker_pid: Annotated[int, Doc("the worker's process id")]
    input_sha256: Annotated[str | None, Doc("sha256 of the latent the worker received")]
    input_shape: Annotated[list[int] | None, Doc("its shape, without the batch")]
    latency: Annotated[Object | None, Doc("the call's timed repeats: timer, n, median_ms, p10_ms, p90_ms, "
                                          "mean_ms, std_ms, min_ms, max_ms, samples_ms, median_ci95_ms, "
                                          "stopped (harness/workers/measure.py)")]
    memory: Annotated[Object | None, Doc("what the calls held: method, and peak_allocated_bytes, "
                                         "peak_reserved_bytes, device_used_bytes (CUDA) or peak_rss_bytes, "
                                         "rss_increment_bytes (CPU)")]
    warmup: Annotated[Object | None, Doc("n, first_call_ms, total_ms, worker_first_call: the untimed "
                                         "calls of a new shape")]
    stage_ms: Annotated[Object | None, Doc("per-stage times a cascade reports")]
    energy: Annotated[Object, Doc("energy counters' blocks around the timed calls, by kind (gpu, cpu)")]
    facts: Annotated[Object, Doc("what the decoder reports after its calls (a tile grid, steps, ...)")]
    image: Annotated[str | None, Doc("the stored output, relative to the run directory")]
    image_sha256: Annotated[str, Doc("sha256 of the stored pixels")]
    failed_size: Annotated[SizeList, Doc("an oom: the size that did not fit")]
    failed_after_ms: Annotated[float, Doc("an oom: how long the task ran before it")]
    memory_after_release: Annotated[Object, Doc("an oom: what the device held once memory was released")]
    retried_after: Annotated[str, Doc("the crash this unit was run again after (`crash_retries`)")]


class MetricRecord(_Stamped, total=False):
    """One metric value: of a decoder × case (or seed group), or of a set (`case` null, `size`)."""

    kind: Required[Annotated[Literal["metric"], Doc("`metric`")]]
    decoder: Required[Annotated[str, Doc("the decoder's id")]]
    case: Required[Annotated[str | None, Doc("the case (the group's lowest-seed case for a seed-group "
                                             "metric); null: a set value")]]
    metric: Required[Annotated[str, Doc("the metric's registry name")]]
    status: Required[Annotated[str, Doc("ok, not_applicable, unavailable, error, or the decode's failure")]]
    value: Annotated[float | None, Doc("the value; null where there is none (`status` says why)")]
    nonfinite: Annotated[str, Doc("`inf`, `-inf` or `nan`: a value JSON cannot hold (value is null)")]
    message: Annotated[str, Doc("why there is no value")]
    version: Annotated[str, Doc("the metric's version")]
    protocol_sha256: Annotated[str, Doc("sha256 of the metric's protocol (params, resize, weights)")]
    size: Annotated[SizeList, Doc("a set value: the comparison size of the set")]
    n: Annotated[int, Doc("a set value: the images it rests on")]
    cases: Annotated[list[str], Doc("a seed-group value: the group's cases")]
    details: Annotated[Object, Doc("the metric's extra fields (GenEval's reasons, CER per font size)")]
    warnings: Annotated[list[str], Doc("a set value: what the metric warned about (too few samples)")]
    artifact: Annotated[str, Doc("an image the metric made (a heat map), relative to the run directory")]


class JudgeRecord(_Stamped, total=False):
    """One pairwise request of the judge: a case, a pair, a criterion, an order."""

    kind: Required[Annotated[Literal["judge"], Doc("`judge`")]]
    case: Required[Annotated[str, Doc("the case")]]
    a: Required[Annotated[str, Doc("the pair's first decoder")]]
    b: Required[Annotated[str, Doc("the pair's second decoder")]]
    criterion: Required[Annotated[str, Doc("the criterion asked about")]]
    status: Required[Annotated[str, Doc("ok, invalid (an answer that is not one) or failed")]]
    order: Annotated[str, Doc("`ab` (a shown as Image A) or `ba`")]
    judge_model: Annotated[str, Doc("the backend's model")]
    template_version: Annotated[str, Doc("the prompt template's version")]
    verdict: Annotated[str | None, Doc("`a`, `b` or `tie`, in decoder terms; null unless ok")]
    reason: Annotated[str | None, Doc("the judge's reason, as answered")]
    cached: Annotated[bool, Doc("answered from the judge cache")]
    calls: Annotated[int, Doc("requests made (retries included)")]
    cost_usd: Annotated[float | None, Doc("what the requests cost, where the backend says")]
    failure: Annotated[str, Doc("a failed request: why (rate limit, timeout, ...)")]


class SweepRecord(_Stamped, total=False):
    """One size of a memory-wall sweep (a sweep directory, manifest kind `sweep`): a fresh worker."""

    kind: Required[Annotated[Literal["sweep"], Doc("`sweep`")]]
    decoder: Required[Annotated[str, Doc("the decoder's id")]]
    size: Required[Annotated[SizeList, Doc("the output size tried [w, h]")]]
    status: Required[Annotated[str, Doc("ok, oom (also: over `--memory-budget`), or another failure")]]
    message: Annotated[str | None, Doc("what went wrong")]
    input_size: Annotated[SizeList, Doc("the input size fed")]
    latency: Annotated[Object | None, Doc("as in decode records")]
    memory: Annotated[Object | None, Doc("as in decode records")]
    energy: Annotated[Object | None, Doc("as in decode records")]
    stage_ms: Annotated[Object | None, Doc("as in decode records")]
    warmup: Annotated[Object | None, Doc("as in decode records")]
    peak_bytes: Annotated[int | None, Doc("the deciding memory figure")]
    peak_kind: Annotated[str | None, Doc("which figure that is (peak_allocated_bytes, ...)")]
    load_failed: Annotated[bool, Doc("the worker could not load the decoder")]
    worker_pid: Annotated[int | None, Doc("the worker's process id")]
    input_sha256: Annotated[str | None, Doc("sha256 of the latent fed")]
    image_sha256: Annotated[str | None, Doc("sha256 of the output's pixels (the image is not kept)")]


Record = Union[LoadRecord, DecodeRecord, MetricRecord, JudgeRecord, SweepRecord]  # noqa: UP007
RECORDS: dict[str, type] = {"load": LoadRecord, "decode": DecodeRecord, "metric": MetricRecord,
                            "judge": JudgeRecord, "sweep": SweepRecord}


class CaseLine(TypedDict, total=False):
    """A line of cases.jsonl: one case, as every decoder of the run was fed it."""

    id: Required[Annotated[str, Doc("the case's stable id (item slug + content hash)")]]
    item_id: Required[Annotated[str, Doc("the source item")]]
    item_sha256: Annotated[str, Doc("the item's content hash")]
    prompt: Annotated[str | None, Doc("the item's prompt or caption")]
    seed: Required[Annotated[int, Doc("the decoder seed")]]
    input_seed: Annotated[int, Doc("the source's seed (latent noise, text-to-image generation)")]
    sigma: Required[Annotated[float, Doc("the noise level the latent was brought to")]]
    input_size: Required[Annotated[SizeList, Doc("the input size [w, h]")]]
    output_size: Required[Annotated[SizeList, Doc("the comparison size [w, h]")]]
    input_path: Annotated[str | None, Doc("the cached latent the workers read")]
    input_sha256: Annotated[str | None, Doc("its sha256")]
    latent_shape: Annotated[list[int] | None, Doc("its shape")]
    input_sigma: Annotated[float, Doc("the latent's own noise level (a captured x_t has its own)")]
    reference_key: Annotated[str | None, Doc("the reference's content hash; null: none")]
    reference: Annotated[str | None, Doc("the stored reference image, relative to the run directory")]
    notes: Annotated[list[str], Doc("what preparing the case noticed")]
    annotations: Annotated[Object, Doc("source facts metrics read (text lines, benchmark metadata)")]
    input_error: Annotated[str, Doc("why the input could not be made (its decodes are input_error)")]


class Invocation(TypedDict, total=False):
    """An entry of the manifest's `phases`: one invocation (`run`, or each `run --resume`)."""

    started: Required[Annotated[str, Doc("when it started (ISO 8601)")]]
    sources_s: Annotated[float, Doc("preparing the inputs")]
    decode_s: Annotated[float, Doc("the decode phase, worker start-ups included")]
    evaluate_s: Annotated[float, Doc("the evaluation phase")]
    judge_s: Annotated[float, Doc("the judge phase")]
    writing_s: Annotated[float, Doc("decoding waited for the image writer")]
    writer_busy_s: Annotated[float, Doc("the writer's own time")]
    slots: Annotated[int, Doc("workers at once")]
    server_s: Annotated[float, Doc("waiting for the worker server's imports")]
    wall_s: Annotated[float, Doc("the invocation's wall time (missing: it was killed)")]


class Manifest(TypedDict, total=False):
    """manifest.json: the run's identity and how to reproduce it, rewritten atomically as it goes."""

    format: Required[Annotated[int, Doc("the run format (1)")]]
    kind: Annotated[Literal["run", "sweep"], Doc("`run` (the default) or `sweep`")]
    created: Annotated[str, Doc("when the run directory was made")]
    decoderbench: Annotated[str, Doc("the version that made it")]
    status: Required[Annotated[str, Doc("running, finished or interrupted")]]
    suite: Required[Annotated[Object, Doc("name, sha256, path (absolute), texts (every file read), "
                                          "resolved (the validated suite)")]]
    environment: Annotated[Object, Doc("the fingerprint: Python, torch, CUDA, GPUs, CPU, packages, git")]
    cache_dir: Annotated[str | None, Doc("the tensor cache the inputs are in (absolute)")]
    items: Annotated[list[Object], Doc("the source's items")]
    source_protocol: Annotated[Object, Doc("what besides the cases determines the inputs")]
    source_model: Annotated[Object, Doc("the encoder or pipeline that made them, with its weights")]
    encoder: Annotated[Object, Doc("images sources: the encoder and its weights")]
    decoders: Annotated[Object, Doc("decoder id → name, params, weights, facts, device")]
    metrics: Annotated[Object, Doc("metric name → version, protocol and its sha256, seconds")]
    phases: Annotated[list[Invocation], Doc("one entry per invocation (below)")]
    executions: Annotated[list[Object], Doc("per invocation: executor, slots, units (where and when "
                                            "each ran), concurrent, overlap_io")]
    energy: Annotated[Object, Doc("idle power and GPU state per invocation (GPU runs)")]
    notes: Annotated[list[str], Doc("what the run had to say (skipped metrics, changed sources)")]
    resumed: Annotated[list[str], Doc("when each resume started")]
    finished: Annotated[str, Doc("when the last invocation ended")]


DOCUMENTED: tuple[type, ...] = (*RECORDS.values(), CaseLine, Manifest, Invocation)


# --------------------------------------------------------------------------- typed filters


def is_decode(record: Record) -> TypeGuard[DecodeRecord]:
    return record["kind"] == "decode"


def is_metric(record: Record) -> TypeGuard[MetricRecord]:
    return record["kind"] == "metric"


def is_load(record: Record) -> TypeGuard[LoadRecord]:
    return record["kind"] == "load"


def is_judge(record: Record) -> TypeGuard[JudgeRecord]:
    return record["kind"] == "judge"


def decodes(records: Iterable[Record]) -> list[DecodeRecord]:
    return [record for record in records if is_decode(record)]


def metrics(records: Iterable[Record]) -> list[MetricRecord]:
    return [record for record in records if is_metric(record)]


def loads(records: Iterable[Record]) -> list[LoadRecord]:
    return [record for record in records if is_load(record)]


def judges(records: Iterable[Record]) -> list[JudgeRecord]:
    return [record for record in records if is_judge(record)]


# --------------------------------------------------------------------------- fields and docs


def fields(cls: type) -> dict[str, tuple[Any, bool, str]]:
    """key → (type, always present, meaning) of a TypedDict of this module; the shared keys (time,
    suite_hash, placement, unit, slot) last."""
    hints = typing.get_type_hints(cls, include_extras=True)
    inherited = set(typing.get_type_hints(_Placed))  # the keys every placed or stamped record shares
    found: dict[str, tuple[Any, bool, str]] = {}
    for key in [*(k for k in hints if k not in inherited), *(k for k in hints if k in inherited)]:
        annotation, required = hints[key], key in cls.__required_keys__
        if typing.get_origin(annotation) in (Required, NotRequired):
            annotation = typing.get_args(annotation)[0]
        doc = ""
        if typing.get_origin(annotation) is Annotated:
            annotation, *extras = typing.get_args(annotation)
            doc = next((str(extra) for extra in extras if isinstance(extra, Doc)), "")
        found[key] = (annotation, required, doc)
    return found


def type_text(annotation: Any) -> str:
    """A key's type as the JSON it is: `"load"`, string, integer, number, [w, h], object, … or null."""
    if annotation is type(None):
        return "null"
    if annotation is SizeList:
        return "[w, h]"
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " or ".join(f'"{value}"' for value in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(type_text(arg) for arg in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation)
        return f"list of {type_text(item)}"
    if origin is dict or annotation is dict:
        return "object"
    if isinstance(annotation, type) and issubclass(annotation, dict):
        return f"object ({annotation.__name__})"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def markdown() -> str:
    """The run-format tables of docs/run-format.md, one per record kind, case line and manifest."""
    titles = {LoadRecord: "`load` records", DecodeRecord: "`decode` records",
              MetricRecord: "`metric` records", JudgeRecord: "`judge` records",
              SweepRecord: "`sweep` records (sweep directories)", CaseLine: "cases.jsonl lines",
              Manifest: "manifest.json", Invocation: "manifest.json `phases` entries"}
    parts = []
    for cls in DOCUMENTED:
        parts.append(f"### {titles[cls]} (`{cls.__name__}`)\n\n{(cls.__doc__ or '').strip()}\n")
        parts.append("| key | type | always | meaning |\n| --- | --- | --- | --- |")
        for key, (annotation, required, doc) in fields(cls).items():
            parts.append(f"| `{key}` | {type_text(annotation)} | {'yes' if required else ''} | {doc} |")
        parts.append("")
    return "\n".join(parts).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
