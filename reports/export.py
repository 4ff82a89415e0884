"""Tidy export of a run: one row per (decoder, case or set, variable), with its context.

Every row carries the run's context — run id, timestamp, suite and its hash, device, GPU
model, dtype, git sha — the decoder's registry name and the digest of the weights it loaded,
and for its value: the unit, which way it is better (`better`: higher, lower, closest to t),
what it describes (`scope`), its status and, where there is no value, the reason; how many
samples it stands on (`n`), the comparison size, and the output image of image rows.

Scopes: `summary` (win rate per summary group, reports/decisions.py — first), `call` (a decode
call of `batch_size` images: latency per call and per image, each memory figure, and the
energy of its block of timed calls per counter — `gpu_energy_per_image_j`, ... — or a
value-less row with the reason where the counter was not read), `image`, `seed_group` (a
group of decoder seeds of one case), `set` (one value per decoder and comparison size: FID,
pooled CER, first call, cold start, pooled energy per image, above idle, mean power, and
the prices per 1,000 images). A pivot that averages `value`
must group by `scope`. Integer columns (sizes, seeds, batch size, n) are integers in CSV and
int64 in Parquet, whatever rows lack them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.records import DecodeRecord, MetricRecord
from harness.view import MEMORY_KINDS, load_run
from reports.price import device_time_price, electricity_price

LATENCY_FIELDS = ("median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "min_ms", "max_ms")
PER_IMAGE_FIELDS = ("median_ms", "p10_ms", "p90_ms", "mean_ms", "min_ms", "max_ms")
WIN_RATE_UNIT = "share of decoders beaten (0–1)"
# Column order, and the Parquet types of the columns that are not strings.
COLUMNS: dict[str, str] = {
    "run_id": "string", "created": "string", "suite": "string", "suite_sha256": "string",
    "device": "string", "gpu": "string", "dtype": "string", "git_sha": "string",
    "decoder": "string", "decoder_name": "string", "weights_digest": "string",
    "scope": "string", "case": "string", "item": "string", "seed": "int64", "sigma": "float64",
    "input_width": "int64", "input_height": "int64", "output_width": "int64", "output_height": "int64",
    "variable": "string", "value": "float64", "unit": "string", "better": "string", "status": "string",
    "reason": "string", "n": "int64", "batch_size": "int64", "decode_status": "string", "image": "string",
    "protocol_sha256": "string", "criteria": "string",
}


def tidy_rows(run_dir: Path) -> list[dict[str, Any]]:
    from reports.summary import summary_rows

    view = load_run(run_dir)
    context = DecoderContexts(view)
    rows = [_summary_row(context, view, row) for row in summary_rows(view)]
    for record in view.records:
        if record["kind"] == "decode":
            rows.extend(_decode_rows(context, view, record))
        elif record["kind"] == "metric":
            rows.append(_metric_row(context, view, record))
    for row in view.rows:
        rows.extend(_first_call_rows(context, view, row))
        rows.extend(_cost_rows(context, view, row))
    return [{column: row.get(column) for column in COLUMNS} for row in rows]


def run_context(view: Any) -> dict[str, Any]:
    manifest = view.manifest
    environment = manifest.get("environment") or {}
    resolved = manifest["suite"]["resolved"]
    gpus = environment.get("gpus") or []
    return {
        "run_id": view.run_dir.name, "created": manifest.get("created"), "suite": view.suite_name,
        "suite_sha256": manifest["suite"]["sha256"], "device": (resolved.get("timing") or {}).get("device"),
        "gpu": ", ".join(sorted({str(g.get("name")) for g in gpus})) if gpus else None,
        "dtype": (resolved.get("timing") or {}).get("dtype"),
        "git_sha": (environment.get("git") or {}).get("sha"),
    }


class DecoderContexts(dict[str, dict[str, Any]]):
    """decoder → the context columns of its rows (the run's, then the decoder's name and weights
    digest), each made once: the digest hashes the decoder's weights map."""

    def __init__(self, view: Any) -> None:
        super().__init__()
        self.view, self.run = view, run_context(view)

    def __missing__(self, decoder: str) -> dict[str, Any]:
        name = next((r.name for r in self.view.rows if r.decoder == decoder), decoder)
        self[decoder] = {**self.run, "decoder": decoder, "decoder_name": name,
                         "weights_digest": self.view.checkpoint(decoder)}
        return self[decoder]


def _case(view: Any, case_id: str | None) -> dict[str, Any]:
    case = view.cases.get(case_id or "", {})
    inputs, outputs = case.get("input_size") or [None, None], case.get("output_size") or [None, None]
    return {"case": case_id, "item": case.get("item_id"), "seed": case.get("seed"),
            "sigma": case.get("sigma"), "input_width": inputs[0], "input_height": inputs[1],
            "output_width": outputs[0], "output_height": outputs[1]}


def _summary_row(context: DecoderContexts, view: Any, row: dict[str, Any]) -> dict[str, Any]:
    decided = row["win_rate"] is not None
    return {**context[row["decoder"]], "scope": "summary", "output_width": row["size"][0],
            "output_height": row["size"][1], "variable": f"win_rate:{row['group']}", "value": row["win_rate"],
            "unit": WIN_RATE_UNIT, "better": "higher", "status": "ok" if decided else "no_decision",
            "reason": row["reason"], "criteria": ", ".join(row["criteria"])}


def _decode_rows(context: DecoderContexts, view: Any, record: DecodeRecord) -> list[dict[str, Any]]:
    latency, memory = record.get("latency") or {}, record.get("memory") or {}
    batch = int(record.get("batch_size") or 1)
    samples = len(latency.get("samples_ms") or []) or latency.get("n")
    common = {**context[record["decoder"]], **_case(view, record["case"]), "scope": "call",
              "status": record["status"], "decode_status": record["status"], "batch_size": batch,
              "image": record.get("image"), "reason": _reason(record)}
    rows = [{**common, "variable": f"latency_{name}", "value": latency[name], "unit": "ms", "n": samples}
            for name in LATENCY_FIELDS if name in latency]
    rows += [{**common, "variable": f"latency_per_image_{name}", "value": latency[name] / batch,
              "unit": "ms", "n": samples} for name in PER_IMAGE_FIELDS if name in latency]
    rows += [{**common, "variable": name, "value": float(memory[name]), "unit": "bytes", "n": 1}
             for name in MEMORY_KINDS if memory.get(name) is not None]
    for kind, block in (record.get("energy") or {}).items():
        rows += _energy_rows(common, kind, block)
    for row in rows:
        row.setdefault("better", "lower")
    return rows or [{**common, "variable": "status", "value": None}]


def _value(record: MetricRecord) -> float | None:
    """The metric value; +∞ where the record says so (PSNR of an output identical to its reference)."""
    if record["status"] == "ok" and record.get("nonfinite") == "inf":
        return math.inf
    return record.get("value")


# block field → (variable after "<kind>_", unit, better)
ENERGY_FIELDS = {"per_call_j": ("energy_per_call_j", "J", "lower"),
                 "per_image_j": ("energy_per_image_j", "J", "lower"),
                 "mean_power_w": ("mean_power_w", "W", None), "energy_j": ("energy_j", "J", "lower"),
                 "block_s": ("energy_block_s", "s", None)}


def _energy_rows(common: dict[str, Any], kind: str, block: Any) -> list[dict[str, Any]]:
    """One block's figures (`n`: its timed calls), or why the counter gave none."""
    if not isinstance(block, dict):
        return []
    if block.get("status") not in ("ok", "low_resolution"):
        return [{**common, "variable": f"{kind}_energy_per_image_j", "value": None, "unit": "J",
                 "status": block.get("status"), "reason": block.get("reason")}]
    return [{**common, "variable": f"{kind}_{variable}", "value": float(block[name]), "unit": unit,
             "better": better, "n": block.get("calls"), "status": block["status"],
             "reason": block.get("reason")}
            for name, (variable, unit, better) in ENERGY_FIELDS.items() if block.get(name) is not None]


def _cost_rows(context: DecoderContexts, view: Any, row: Any) -> list[dict[str, Any]]:
    """Per decoder and comparison size: pooled energy per counter, and the prices per 1,000 images."""
    common = {**context[row.decoder], "scope": "set", "output_width": row.size[0],
              "output_height": row.size[1], "better": "lower", "batch_size": row.batch_size}
    rows = []
    for kind, summary in row.energy.items():
        if not summary.measured:
            rows.append({**common, "variable": f"{kind}_energy_per_image_j", "value": None, "unit": "J",
                         "status": "not_measured", "reason": summary.reason or None})
            continue
        values = {f"{kind}_energy_per_image_j": (summary.per_image_j, "J", "lower"),
                  f"{kind}_energy_above_idle_per_image_j": (summary.above_idle_per_image_j, "J", "lower"),
                  f"{kind}_mean_power_w": (summary.mean_power_w, "W", None)}
        rows += [{**common, "variable": name, "value": value, "unit": unit, "better": better,
                  "n": summary.blocks, "status": "low_resolution" if summary.low_resolution else "ok",
                  "reason": summary.reason or None}
                 for name, (value, unit, better) in values.items() if value is not None]
    device = str((view.manifest["suite"]["resolved"].get("timing") or {}).get("device") or "device")
    prices = {"price_per_1k_images_device_time": device_time_price(view.cost, row.image_latency(0.5), device)}
    if (view.cost or {}).get("kwh") is not None:
        energy = row.device_energy
        prices["price_per_1k_images_electricity"] = electricity_price(
            view.cost, row.energy_per_image_j, row.energy_kind or "the device",
            energy.reason if energy is not None and energy.reason else "no energy was recorded")
    for name, price in prices.items():
        rows.append({**common, "variable": name, "value": price.value,
                     "unit": f"{price.currency} per 1,000 images", "n": 1,
                     "status": "ok" if price.value is not None else "not_priced", "reason": price.reason})
    return rows


def _metric_row(context: DecoderContexts, view: Any, record: MetricRecord) -> dict[str, Any]:
    metric = record["metric"]
    info = view.metric_info.get(metric) or {}
    direction = view.direction(metric)
    decode = view.decodes.get((record["decoder"], record["case"])) or {}
    row = {**context[record["decoder"]], **_case(view, record["case"]),
           "variable": metric, "value": _value(record), "unit": view.unit(metric),
           "better": direction.label if direction else None, "status": record["status"],
           "reason": _reason(record), "decode_status": decode.get("status"), "image": decode.get("image"),
           "protocol_sha256": record.get("protocol_sha256")}
    if record["case"] is None:  # one value for a decoder at a comparison size (FID, pooled CER, ...)
        size = record.get("size") or [None, None]
        row.update(scope="set", output_width=size[0], output_height=size[1], n=record.get("n"), image=None)
    else:
        scope = info.get("scope", "image")
        row.update(scope=scope, n=len(record.get("cases") or []) or 1 if scope == "seed_group" else 1)
    return row


def _first_call_rows(context: DecoderContexts, view: Any, row: Any) -> list[dict[str, Any]]:
    """First call, worker start-up, cold start and the latency's spread: one value per decoder and
    comparison size."""
    common = {**context[row.decoder], "scope": "set", "output_width": row.size[0],
              "output_height": row.size[1], "unit": "ms", "better": "lower", "status": "ok", "n": 1,
              "batch_size": row.batch_size}
    values = {"first_call_ms": row.first_call_ms, "worker_startup_ms": row.worker_startup_ms,
              "cold_start_ms": row.cold_start_ms}
    rows = [{**common, "variable": name, "value": value}
            for name, value in values.items() if value is not None]
    if row.latency_spread is not None:  # IQR / median of the timed calls: above 10 %, unstable
        rows.append({**common, "variable": "latency_spread", "value": row.latency_spread,
                     "unit": "IQR / median", "n": len(row.calls_ms[row.batch_size]),
                     "status": "unstable" if row.latency_unstable else "ok",
                     "reason": "timed calls spread above 10 % of their median: not ranked"
                     if row.latency_unstable else None})
    return rows


def _reason(record: dict[str, Any]) -> str | None:
    """Why a record has no value (its status message), or a non-finite value's note."""
    if record.get("status") == "ok" and record.get("nonfinite") == "inf":
        return "∞: the output is identical to its reference"
    if record.get("status") == "ok":
        return f"non-finite value ({record['nonfinite']})" if record.get("nonfinite") else None
    return record.get("message") or record.get("status")


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError(
            "Parquet export needs pyarrow: pip install 'decoderbench[parquet]' (or use --csv)"
        ) from None
    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    schema = pa.schema([(name, types[kind]) for name, kind in COLUMNS.items()])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
