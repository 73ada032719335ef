"""What a run prints and writes to ``summary.md``: the per-image table, the skipped inputs, the verdict.

Every table is read from records (:mod:`blackbox.experiment.record`), so a finished run's summary can
be rebuilt from its ``results.jsonl`` and ``errors.jsonl``; a ``-m`` sweep's table reads each job's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from blackbox.core.objective import SUCCESS_RULES
from blackbox.experiment.jsonl import JsonlError, read_records
from blackbox.experiment.record import crop_counts


def verdict(records: list[dict], skipped: int = 0) -> str:
    """One line for the end of a run: how many attacked images had their crops moved to the goal.

    Images whose clean salient point was already in the goal are not counted as attacked.
    """
    attacked = [r for r in records if not r["clean_in_goal"]]
    moved = sum(bool(r["success"]) for r in attacked)
    notes = []
    if len(attacked) < len(records):
        notes.append(f"{len(records) - len(attacked)} already in the goal")
    if skipped:
        notes.append(f"{skipped} skipped, see errors.jsonl")
    extra = f" ({'; '.join(notes)})" if notes else ""
    if not attacked:
        return f"verdict: no image attacked{extra}"
    return f"verdict: {moved} of {len(attacked)} images: crop moved to the goal{extra}"


def spending_line(records: list[dict], errors: list[dict]) -> str:
    """What the target's service was asked in all, from every image's ``target_counters`` (results and
    errors alike): requests sent, retries, 429s and cost. Empty when the target counts no requests."""
    counters = [
        r["target_counters"] for r in [*records, *errors] if isinstance(r.get("target_counters"), dict)
    ]
    if not any("requests" in c for c in counters):
        return ""

    def total(key: str) -> float:
        return float(sum(c.get(key, 0) or 0 for c in counters))

    parts = [f"{total('requests'):.0f} requests", f"{total('retries'):.0f} retried"]
    if any("throttled" in c for c in counters):
        parts.append(f"{total('throttled'):.0f} answered 429")
    if any("cost" in c for c in counters):
        parts.append(f"cost {total('cost'):g}")
    return "target service: " + ", ".join(parts)


def skipped_table_count(errors: list[dict], records: list[dict]) -> int:
    """How many inputs are skipped and not attacked since (as :func:`skipped_table` lists them)."""
    done = {r["image"] for r in records}
    return len({e["image"] for e in errors if e["image"] not in done})


class SweepJob(NamedTuple):
    """One job of a ``-m`` sweep: its Hydra job number, overrides, folder and exit code (``None``:
    not recorded, a sweep made before exit codes were)."""

    number: str
    overrides: str
    folder: Path
    exit_code: int | None = None


def sweep_table(jobs: Sequence[SweepJob]) -> str:
    """One Markdown table for a ``-m`` sweep: a row per job, numbered as its folder is, with its exit
    code, its results and how many of its inputs were skipped.

    A job that attacked nothing (every input skipped) or left no folder (a bad setting) still has its
    row, with dashes where it has no results.
    """
    rows = [
        "| job | settings | exit | images | success | point moved % | peak moved % | queries | L2 "
        "| skipped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for job in jobs:
        try:
            records = read_records(job.folder / "results.jsonl")
            errors = read_records(job.folder / "errors.jsonl")
            skipped = str(skipped_table_count(errors, records)) if job.folder.is_dir() else "-"
        except JsonlError:
            records, skipped = [], "-"
        rate = success_rate(records)

        def mean(key: str, records: list[dict] = records) -> str:
            values = [r[key] for r in records if r.get(key) is not None]
            return f"{float(np.mean(values)):.1f}" if values else "-"

        rows.append(
            f"| {job.number} | {job.overrides or '-'} | {'-' if job.exit_code is None else job.exit_code} | "
            f"{len(records)} | {'-' if math.isnan(rate) else f'{100 * rate:.0f}%'} | "
            f"{mean('point_shift_pct_distance')} | {mean('shift_pct_distance')} | {mean('queries')} | "
            f"{mean('l2')} | {skipped} |"
        )
    return "\n".join(rows)


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        # Rounding first, then + 0.0, prints a tiny negative as "0.0", not "-0.0".
        return "inf" if math.isinf(value) else f"{round(value, digits) + 0.0:.{digits}f}"
    return str(value)


def summary_table(records: list[dict]) -> str:
    """A Markdown table, one row per image and a mean row.

    An image whose clean salient point already lies in the goal succeeds trivially: the table marks
    it (``clean in goal``) and the mean row's success rate counts only the other images. ``success``
    is by the run's rule (``success=``); ``point / crops / any crop`` gives every rule's verdict
    (``n/a``: no crop can hold the goal; ``clean``: the clean image already met that rule), and the
    mean row each rule's rate over the images it counts (``40% of 5``), which leaves out both.

    Movement, each column one quantity for every target: ``point moved %``, how far the salient point
    (given, the map's argmax, or implied by the crops) moved toward the goal's centre, as % of its
    clean distance from it (100: reached it); ``peak moved %``, the same for the paper's profile peak
    of the saliency map (the column sums' maximum), ``-`` for a target without a map.
    """
    header = (
        "| image | goal | clean in goal | success | point / crops / any crop | point moved % | peak moved % "
        "| queries | to success | crops showing goal | L2 | Linf*255 | PSNR |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [header]
    for r in records:
        shown, clean_shown, crops = crop_counts(r)
        rows.append(
            f"| {r['image']} | {r['goal']['source']} | {_fmt(r['clean_in_goal'])} | {_fmt(r['success'])} | "
            f"{_by_rule(r)} | {_fmt(r.get('point_shift_pct_distance'))} | {_fmt(r['shift_pct_distance'])} | "
            f"{r['queries']} | {_fmt(r['queries_to_success'])} | "
            f"{clean_shown}→{shown}/{crops} | "
            f"{_fmt(r['l2'], 2)} | {_fmt(r['linf'] * 255, 0)} | {_fmt(r['psnr'])} |"
        )
    if records:

        def mean(key: str) -> float:
            values = [r[key] for r in records if r.get(key) is not None]
            return float(np.mean(values)) if values else float("nan")

        def mean_text(key: str) -> str:
            value = mean(key)
            return "-" if math.isnan(value) else f"{value:.1f}"

        rate_text = _rate_text(success_rate(records))
        trivial = sum(bool(r["clean_in_goal"]) for r in records)
        rates = " / ".join(
            _rate_text(rule_success_rate(records, rule), _rule_counted(records, rule))
            for rule in SUCCESS_RULES
        )
        rows.append(
            f"| **mean ({len(records)})** | | {trivial} | {rate_text} | {rates} | "
            f"{mean_text('point_shift_pct_distance')} | {mean_text('shift_pct_distance')} | "
            f"{mean('queries'):.1f} | | | "
            f"{mean('l2'):.2f} | "
            f"{mean('linf') * 255:.0f} | {mean('psnr'):.1f} |"
        )
    return "\n".join(rows)


def skipped_table(errors: list[dict], records: list[dict]) -> str:
    """The inputs skipped and not attacked since (a re-run retries them), so none goes missing unseen."""
    done = {r["image"] for r in records}
    latest = {e["image"]: e for e in errors if e["image"] not in done}
    if not latest:
        return ""
    rows = [
        f"\n\n**Skipped ({len(latest)})**, not in the table above:\n",
        "| image | file | reason |",
        "|---|---|---|",
    ]
    rows += [f"| {e['image']} | {e['source']} | {e['error'].replace('|', '/')} |" for e in latest.values()]
    return "\n".join(rows)


def _by_rule(record: dict) -> str:
    """``yes / no / n/a`` for the point, crops and any-crop rules (``-`` in records made before them)."""
    by_rule = record.get("success_by_rule")
    if not by_rule:
        return "-"
    clean = record.get("clean_success_by_rule") or {}

    def verdict_text(rule: str) -> str:
        if by_rule.get(rule) is None:
            return "n/a"
        return "clean" if clean.get(rule) else _fmt(by_rule[rule])

    return " / ".join(verdict_text(rule) for rule in SUCCESS_RULES)


def _rate_text(rate: float, counted: int | None = None) -> str:
    if math.isnan(rate):
        return "-"
    return f"{100 * rate:.0f}%" if counted is None else f"{100 * rate:.0f}% of {counted}"


def _rule_verdicts(records: list[dict], rule: str) -> list[bool]:
    return [
        bool(r["success_by_rule"][rule])
        for r in records
        if r.get("success_by_rule")
        and r["success_by_rule"].get(rule) is not None
        and not r["clean_success_by_rule"].get(rule)
    ]


def _rule_counted(records: list[dict], rule: str) -> int:
    return len(_rule_verdicts(records, rule))


def rule_success_rate(records: list[dict], rule: str) -> float:
    """Success by ``rule`` over the images it applies to whose clean image did not already meet it."""
    verdicts = _rule_verdicts(records, rule)
    return float(np.mean(verdicts)) if verdicts else float("nan")


def success_rate(records: list[dict]) -> float:
    """Success over the images whose clean image did not already succeed (NaN if none).

    Images where the run's rule does not apply (no crop can hold the goal) are left out too.
    """
    attacked = [
        r
        for r in records
        if not r["clean_in_goal"]
        and (r.get("success_by_rule") or {}).get(r.get("success_rule", "point"), False) is not None
    ]
    return float(np.mean([r["success"] for r in attacked])) if attacked else float("nan")
