"""One run: every image of the dataset attacked through the pipeline, outputs written under the run folder.

The core of ``python -m blackbox``: it takes typed settings (the edge, :func:`blackbox.settings.commands.run`,
builds them from the Hydra config) and runs :class:`~blackbox.experiment.pipeline.Pipeline` on each
image the experiment schedules (a local run folder, or one of many PostgreSQL workers).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from blackbox.core.datasets import ImageSource
from blackbox.core.images import ImageLoadError, save_png
from blackbox.core.visualize import side_by_side
from blackbox.experiment.attack_spec import AttackSpec
from blackbox.experiment.jsonl import append_record, read_records
from blackbox.experiment.options import RunOptions
from blackbox.experiment.pipeline import ImageSkipped, Pipeline
from blackbox.experiment.study import Experiment
from blackbox.experiment.summary import (
    skipped_table,
    skipped_table_count,
    spending_line,
    summary_table,
    verdict,
)

# Exit codes of `python -m blackbox`.
EXIT_OK, EXIT_SKIPPED, EXIT_NOTHING_DONE, EXIT_BAD_CONFIG = 0, 3, 4, 2


@dataclass
class RunSummary:
    run_dir: Path
    records: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if not self.records and not self.resumed:
            return EXIT_NOTHING_DONE
        return EXIT_SKIPPED if self.skipped else EXIT_OK


def attack_images(
    *,
    pipeline: Pipeline,
    spec: AttackSpec,
    options: RunOptions,
    sources: Sequence[ImageSource],
    experiment: Experiment,
    run_dir: Path,
) -> RunSummary:
    """Attack every image ``experiment`` schedules; write PNGs, ``results.jsonl``, ``errors.jsonl`` and
    ``summary.md``, and print the summary table and the verdict.

    The caller holds ``run_dir`` (:func:`blackbox.experiment.run_folder.working_in`) and has checked
    that the target gives what the attack needs (:meth:`Pipeline.check
    <blackbox.experiment.pipeline.Pipeline.check>`, before the experiment is opened). Images already
    done (an earlier session, another worker) are kept; skipped ones are named in ``errors.jsonl``.

    Raises:
        targets.MissingCapabilityError: the target lacks what the attack needs (every attack checks).
    """
    callbacks = experiment.trial_callbacks(options.artifacts)
    attack = spec.build(storage=experiment.storage, trial_callbacks=callbacks)
    summary = RunSummary(run_dir)
    results_path, errors_path = run_dir / "results.jsonl", run_dir / "errors.jsonl"
    # The whole job's progress (image k of N, time left); each image's search has its own bar.
    job = tqdm(total=len(sources), desc="images", unit="image", disable=not options.progress)
    scheduled = _counted(experiment.schedule(sources, options.working_width), job)

    for source, loaded in scheduled:
        if experiment.is_done(source.image_id):
            summary.resumed.append(source.image_id)
            continue
        if isinstance(loaded, ImageLoadError):
            _skip(summary, errors_path, source.image_id, source.location, str(loaded))
            continue
        try:
            outcome = pipeline.run(attack, loaded, eps=options.eps)
        except ImageSkipped as skipped:
            _skip(
                summary,
                errors_path,
                source.image_id,
                source.location,
                skipped.reason,
                skipped.target_counters,
            )
            continue
        result = outcome.result
        save_png(result.adversarial, run_dir / "adversarial" / f"{loaded.image_id}.png")
        # The same perturbation at the picture's own size, within the budget measured there.
        save_png(outcome.adversarial, run_dir / "full_size" / f"{loaded.image_id}.png")
        side_by_side(
            loaded.pixels,
            result.adversarial,
            outcome.clean.measured,
            result.adversarial_output,
            result.goal,
            run_dir / "side_by_side" / f"{loaded.image_id}.png",
        )
        experiment.record(outcome.record)
        summary.records.append(outcome.record)

    job.close()
    experiment.close()
    records = read_records(results_path)
    errors = read_records(errors_path)
    table = summary_table(records) + skipped_table(errors, records)
    spent = spending_line(records, errors)
    if spent:
        table += f"\n\n{spent}"
    last_line = verdict(records, skipped_table_count(errors, records))
    (run_dir / "summary.md").write_text(f"{table}\n\n{last_line}\n")
    print(table)
    if summary.skipped:
        print(f"\n{len(summary.skipped)} input(s) skipped; reasons in {errors_path}", file=sys.stderr)
    print(f"\nrun folder: {run_dir}")
    print(last_line)
    return summary


def _counted(items: Iterator[tuple], bar: tqdm) -> Iterator[tuple]:
    """``items`` as they come, the bar advanced once each is done with (also when skipped)."""
    for item in items:
        bar.set_postfix_str(str(item[0].image_id), refresh=False)
        yield item
        bar.update(1)


def _skip(
    summary: RunSummary,
    errors_path: Path,
    image_id: str,
    location: str,
    reason: str,
    counters: dict[str, int] | None = None,
) -> None:
    record: dict = {"image": image_id, "source": location, "error": reason}
    if counters:
        record["target_counters"] = counters
    summary.skipped.append(record)
    append_record(errors_path, record)
    print(f"skipped {location}: {reason}", file=sys.stderr)
