"""`batchrun report`: progress and totals of a run, as a dict for scripts and as text for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from batchrun.results.read import read_table
from batchrun.store import read_manifest, shard_folders
from batchrun.store.batches import read_batches

TOKEN_KINDS = ("prompt", "completion", "reasoning", "cached", "total")


def _sum(table: pa.Table, column: str) -> int:
    values = table.column(column).to_numpy(zero_copy_only=False)
    return int(np.nansum(values.astype("float64"))) if len(values) else 0


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(np.asarray(values), [50, 90, 99])
    return {"p50": round(float(p50), 4), "p90": round(float(p90), 4), "p99": round(float(p99), 4)}


def _cost(rows: list[dict[str, Any]], priced: bool) -> float | None:
    if not priced:
        return None
    return round(sum(r["cost_usd"] or 0.0 for r in rows), 6)


def build_report(root: str | Path) -> dict[str, Any]:
    """Counts, tokens, cost, latency and errors of the run in `root`."""
    root = Path(root)
    table = read_table(root)
    folders = shard_folders(root)
    manifest = _merged_manifest([read_manifest(f) for _, f in folders]) if folders else (
        read_manifest(root) or {})
    job = manifest.get("job", {})
    variants = {v["name"]: v for v in job.get("variant", [])}
    input_rows = int(manifest.get("input_rows", 0))
    # A run started with --limit N expects the results of the first N rows, not of all of them.
    limit = manifest.get("limit")
    counted_rows = input_rows if limit is None else min(input_rows, int(limit))
    rows = table.select(
        ["variant", "provider", "model", "status", "cost_usd", "latency_s", "attempts",
         "error_type", "error_message"]
    ).to_pylist()
    for name in {r["variant"] for r in rows} - set(variants):
        variants[name] = {"name": name, "samples": 1, "price": None}
    priced = {name: v.get("price") is not None for name, v in variants.items()}

    by_variant: dict[str, Any] = {}
    for name, spec in variants.items():
        mine = [r for r in rows if r["variant"] == name]
        ok = sum(r["status"] == "ok" for r in mine)
        expected = counted_rows * int(spec.get("samples", 1))
        attempts = [r["attempts"] for r in mine if r["attempts"] is not None]
        by_variant[name] = {
            "mode": spec.get("mode", "online"),
            "ok": ok,
            "error": len(mine) - ok,
            "pending": max(0, expected - len(mine)),
            "cost_usd": _cost(mine, priced[name]),
            "latency_s": _percentiles(
                [r["latency_s"] for r in mine if r["latency_s"] is not None]
            ),
            "attempts": {"mean": round(float(np.mean(attempts)), 3) if attempts else None,
                         "max": max(attempts, default=None)},
        }

    errors: dict[str, Any] = {}
    for r in rows:
        if r["status"] != "ok":
            entry = errors.setdefault(r["error_type"], {"count": 0, "example": r["error_message"]})
            entry["count"] += 1

    ok_total = sum(v["ok"] for v in by_variant.values())
    error_total = sum(v["error"] for v in by_variant.values())
    pending_total = sum(v["pending"] for v in by_variant.values())
    return {
        "name": manifest.get("name"),
        "rows": {"total": ok_total + error_total + pending_total, "ok": ok_total,
                 "error": error_total, "pending": pending_total},
        "input_rows": input_rows,
        "limit": limit,
        "tokens": {kind: _sum(table, f"{kind}_tokens") for kind in TOKEN_KINDS},
        "cost_usd": {
            "total": round(sum(v["cost_usd"] or 0.0 for v in by_variant.values()), 6),
            "by_variant": {name: v["cost_usd"] for name, v in by_variant.items()},
            "by_provider": _cost_by(rows, "provider", priced),
            "by_model": _cost_by(rows, "model", priced),
        },
        "unpriced_variants": sorted(name for name, p in priced.items() if not p),
        "by_variant": by_variant,
        "errors": errors,
        "shards": _shards(table, folders) if folders else None,
        "batches": _batches(root, folders),
    }


def _batches(root: Path, folders: list[tuple[str, Path]]) -> list[dict[str, Any]]:
    """The run's provider batches (every shard's), in the order they were planned."""
    found: list[dict[str, Any]] = []
    shards: list[tuple[str | None, Path]] = [*folders] or [(None, root)]
    for shard, folder in shards:
        _, states = read_batches(folder)
        found.extend({**state.to_dict(), "shard": shard} for state in states.values())
    return found


def _merged_manifest(manifests: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The manifests of a run's shards as one: the job, and the rows of the shards started."""
    started = [m for m in manifests if m is not None]
    if not started:
        return {}
    return {**started[0], "input_rows": sum(int(m.get("input_rows", 0)) for m in started),
            "limit": None}


def _shards(table: pa.Table, folders: list[tuple[str, Path]]) -> dict[str, Any]:
    """Per shard: ok / error / pending against the requests it expects (once it has started)."""
    counts: dict[tuple[str, str], int] = {}
    for shard, status in zip(table.column("shard").to_pylist(),
                             table.column("status").to_pylist(), strict=True):
        counts[shard, status] = counts.get((shard, status), 0) + 1
    count = int(folders[0][0].rsplit("-", 1)[1])
    found = dict(folders)
    shards: dict[str, Any] = {}
    for index in range(count):
        name = f"{index}-of-{count}"
        manifest = read_manifest(found[name]) if name in found else None
        ok, error = counts.get((name, "ok"), 0), counts.get((name, "error"), 0)
        expected = None if manifest is None else int(manifest.get("expected", 0))
        shards[name] = {
            "ok": ok, "error": error,
            "pending": None if expected is None else max(0, expected - ok - error),
            "started": manifest is not None,
            # A shard run with --limit N asks only for its rows among the first N input rows.
            "limit": None if manifest is None else manifest.get("limit"),
        }
    return {"count": count, "started": sum(s["started"] for s in shards.values()),
            "by_shard": shards}


def _cost_by(rows: list[dict[str, Any]], key: str, priced: dict[str, bool]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    return {
        name: _cost(
            [r for r in mine if priced.get(r["variant"])],
            any(priced.get(r["variant"]) for r in mine),
        )
        for name, mine in groups.items()
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as a short screen of text."""
    rows, tokens, cost = report["rows"], report["tokens"], report["cost_usd"]
    limit, input_rows = report.get("limit"), report.get("input_rows")
    against = ""
    if limit is not None and input_rows is not None and limit < input_rows:
        against = (f" (the run's --limit {limit}: the first {limit:,} of {input_rows:,} input "
                   "rows; run without --limit for the rest)")
    lines = [
        f"run {report.get('name') or ''}".rstrip(),
        f"rows      {rows['ok']} ok, {rows['error']} error, {rows['pending']} pending "
        f"of {rows['total']}{against}",
        "tokens    " + ", ".join(f"{tokens[k]:,} {k}" for k in TOKEN_KINDS),
        (f"cost      ${cost['total']:.4f} (priced variants)" if len(report["unpriced_variants"])
         < len(report["by_variant"]) else "cost      unpriced (no variant has a price)"),
    ]
    for name, v in report["by_variant"].items():
        price = "unpriced" if v["cost_usd"] is None else f"${v['cost_usd']:.4f}"
        lat = v["latency_s"]
        latency = "" if lat["p50"] is None else (
            f"  latency p50 {lat['p50']:.2f}s p90 {lat['p90']:.2f}s p99 {lat['p99']:.2f}s"
        )
        lines.append(
            f"  {name}: {v['ok']} ok, {v['error']} error, {v['pending']} pending, {price}{latency}"
        )
    for kind, entry in report["errors"].items():
        lines.append(f"  error {kind} x{entry['count']}: {entry['example']}")
    lines += _batch_lines(report.get("batches") or [])
    shards = report.get("shards")
    if shards:
        unseen = shards["count"] - shards["started"]
        note = f" (the rows of {unseen} not started are not counted above)" if unseen else ""
        lines.append(f"shards    {shards['started']} of {shards['count']} started{note}")
        for name, v in shards["by_shard"].items():
            pending = "not started" if not v["started"] else f"{v['pending']} pending"
            limited = "" if v.get("limit") is None else (
                f" (its rows among the first {v['limit']:,} input rows: it ran with --limit)")
            lines.append(f"  {name}: {v['ok']} ok, {v['error']} error, {pending}{limited}")
    return "\n".join(lines)


BATCHES_SHOWN = 20


def _batch_lines(batches: list[dict[str, Any]]) -> list[str]:
    """A line for the run's batches in all, then one per batch (the latest ones)."""
    if not batches:
        return []
    states: dict[str, int] = {}
    for batch in batches:
        shown = batch["status"] if batch["state"] == "created" else batch["state"]
        states[shown or "submitted"] = states.get(shown or "submitted", 0) + 1
    lines = ["batches   " + ", ".join(f"{n} {state}" for state, n in states.items())]
    hidden = len(batches) - BATCHES_SHOWN
    if hidden > 0:
        lines.append(f"  ({hidden} earlier batches not shown; --json lists them all)")
    for batch in batches[-BATCHES_SHOWN:]:
        where = batch["batch_id"] or "not submitted"
        status = batch["status"] or batch["state"]
        counts = f"{batch['done']}/{batch['total'] or batch['requests']} lines"
        settled = (f", {batch['ok']} ok, {batch['error']} error" if batch["state"] == "committed"
                   else "")
        again = batch["resubmitted"] + batch["online"]
        sent_again = f", {again} sent again" if again else ""
        lines.append(f"  {batch['key']} {batch['variant']} {where}: {batch['state']} "
                     f"({status}), {counts}{settled}{sent_again}")
        if batch["message"]:
            lines.append(f"    {batch['message']}")
    return lines
