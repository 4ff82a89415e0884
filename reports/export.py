"""Tidy export of a run: one row per (decoder, case, variable).

The summary comes first: each decoder's win rate per summary group and
overall (reports/decisions.py), one row per (comparison size, decoder,
group), `scope` "summary". Then every decode and metric record. Every row
says which way its value is better (`better`: higher, lower, closest to t)
and what it describes (`scope`: summary, call, image, seed_group, set).
Latency comes per call (`latency_*`, of `batch_size` images) and per image
(`latency_per_image_*`); each memory figure under its own name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.metrics.direction import Direction
from harness.store import read_run

LATENCY_FIELDS = ("median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "min_ms", "max_ms")
PER_IMAGE_FIELDS = ("median_ms", "p10_ms", "p90_ms", "mean_ms", "min_ms", "max_ms")
MEMORY_FIELDS = ("peak_allocated_bytes", "peak_reserved_bytes", "device_used_bytes", "peak_rss_bytes",
                 "rss_increment_bytes")


def tidy_rows(run_dir: Path) -> list[dict[str, Any]]:
    from reports.aggregate import load_run
    from reports.decisions import summary_rows

    data = read_run(run_dir)
    manifest, records = data.manifest, data.records
    cases = {c["id"]: c for c in data.cases}
    statuses = {(r["decoder"], r["case"]): r["status"] for r in records if r["kind"] == "decode"}
    base = {"suite": manifest["suite"]["name"], "suite_sha256": manifest["suite"]["sha256"]}
    info = manifest.get("metrics") or {}
    rows: list[dict[str, Any]] = [
        {**base, "decoder": row["decoder"], "case": None, "output_width": row["size"][0],
         "output_height": row["size"][1], "variable": f"win_rate:{row['group']}", "value": row["win_rate"],
         "better": "higher", "scope": "summary", "status": "ok", "protocol_sha256": None,
         "criteria": ", ".join(row["criteria"])}
        for row in summary_rows(load_run(run_dir))
    ]
    for record in records:
        if record["kind"] not in ("decode", "metric"):
            continue
        case = cases.get(record["case"] or "", {})
        common = {
            **base, "decoder": record["decoder"], "case": record["case"],
            "item": case.get("item_id"), "seed": case.get("seed"), "sigma": case.get("sigma"),
            "input_width": (case.get("input_size") or [None, None])[0],
            "input_height": (case.get("input_size") or [None, None])[1],
            "output_width": (case.get("output_size") or [None, None])[0],
            "output_height": (case.get("output_size") or [None, None])[1],
            "decode_status": statuses.get((record["decoder"], record["case"])),
        }
        if record["kind"] == "decode":
            rows.extend(_decode_rows(record, common))
            continue
        metric = info.get(record["metric"]) or {}
        direction = Direction.from_info(metric)
        scope = "set" if record["case"] is None else metric.get("scope", "image")
        if record["case"] is None and record.get("size"):
            common.update(output_width=record["size"][0], output_height=record["size"][1])
        rows.append({**common, "variable": record["metric"], "value": record.get("value"),
                     "better": direction.label if direction else None, "scope": scope,
                     "status": record["status"], "protocol_sha256": record["protocol_sha256"]})
    return rows


def _decode_rows(record: dict[str, Any], common: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    latency, memory = record.get("latency") or {}, record.get("memory") or {}
    batch = int(record.get("batch_size") or 1)
    for name in LATENCY_FIELDS:
        if name in latency:
            rows.append({**common, "variable": f"latency_{name}", "value": latency[name]})
    for name in PER_IMAGE_FIELDS:
        if name in latency:
            rows.append({**common, "variable": f"latency_per_image_{name}", "value": latency[name] / batch})
    for name in MEMORY_FIELDS:
        if memory.get(name) is not None:
            rows.append({**common, "variable": name, "value": float(memory[name])})
    for row in rows:
        row["better"] = "lower"
    if not rows:
        rows.append({**common, "variable": "status", "value": None, "better": None})
    for row in rows:
        row.update(status=record["status"], protocol_sha256=None, scope="call", batch_size=batch)
    return rows


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError(
            "Parquet export needs pyarrow: pip install 'decoderbench[parquet]' (or use --csv)"
        ) from None
    pq.write_table(pa.Table.from_pylist(rows), path)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    import csv

    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
