"""``python -m blackbox.robustness targets=[...] eps_list=[...]``: which cropper is easiest to steer.

The black-box attack of ``python -m blackbox`` (the configured ``sampler`` and ``search``, ``budget``
queries, early stop at the first success) runs on every target of ``targets`` (zoo names; ``http``
for any cropper behind the HTTP protocol, set through ``target_settings.http``), on every image of
the dataset, at every eps of ``eps_list`` from the smallest up. Each target sets its own goal from
its own clean answer (:class:`~blackbox.core.goal_rule.GoalRule`) and
judges success by its own ``success=auto``
rule: the salient point for a target that gives a point or map, the crops for a crop-only one.

With ``stop_at_first_success`` (the default) an image's sweep ends at the first eps that succeeds:
the larger ones are not attacked, so the report gives the smallest eps *of the sweep* that moved the
crop. Success at eps ``e`` is "some eps <= e moved it", which is what a larger budget allows anyway.

Every finished attack is one row of ``results.csv``, appended at once: re-run with the same
``hydra.run.dir`` and the rows it has are not redone. ``report.md`` and ``robustness.png`` are rebuilt
from ``results.csv`` at the end (:mod:`blackbox.evaluate.robustness_report`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from blackbox.core.datasets import ImageSource, iterate
from blackbox.core.goal_rule import GoalRule
from blackbox.core.images import ImageLoadError, LoadedImage, save_png
from blackbox.evaluate.robustness_report import write_robustness_report
from blackbox.experiment.attack_spec import SearchSpec
from blackbox.experiment.csv_results import CsvResults
from blackbox.experiment.options import StorageSettings
from blackbox.experiment.pipeline import Clean, ImageSkipped, Pipeline
from blackbox.experiment.record import csv_row
from blackbox.experiment.run import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SKIPPED
from blackbox.experiment.storage import make_storage
from targets import Target

#: The columns of ``results.csv``, one row per (target, image, eps) attack.
COLUMNS = (
    "target",
    "image",
    "eps",
    "eps_inf",
    "success",
    "success_rule",
    "clean_in_goal",
    "queries",
    "queries_to_success",
    "crops_showing_goal",
    "clean_crops_showing_goal",
    "crops",
    "shift_pct_distance",
    "l2",
    "linf",
    "linf_levels",
    "psnr",
    "ssim",
    "ssimulacra2",
    "goal_source",
    "sampler",
    "search",
    "budget",
)


class RobustnessTable(CsvResults):
    """``results.csv``: rows appended and flushed one by one, so an interruption loses none.

    Raises :class:`ConfigError` when an existing file holds a row this module did not write.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(
            path, columns=COLUMNS, required=("target", "image", "eps", "success"), flags=("success",)
        )

    def done(self, target: str, image: str) -> dict[float, bool]:
        """``{eps: success}`` of the attacks finished on ``image`` against ``target``."""
        return {
            round(float(r["eps"]), 6): r["success"] == "True"
            for r in self.rows
            if r["target"] == target and r["image"] == image
        }


def row_from_record(record: Mapping, *, spec: SearchSpec) -> dict:
    """The ``results.csv`` row of one attack's record (:func:`~blackbox.experiment.record.csv_row`),
    with the search that made it: ``spec``'s sampler, space name (where known) and budget."""
    return csv_row(record, COLUMNS, sampler=spec.sampler_name, search=spec.search_name, budget=spec.budget)


class Robustness:
    """One robustness run: the black-box search on every target, image and eps, through one pipeline.

    Args:
        targets: zoo name to a function building that target (called when the target's turn comes).
        goal_rule, norm, success: what every target's :class:`Pipeline` shares (each target sets its own
            goal from its own clean answer and judges success by its own ``auto`` rule).
        spec_for: the black-box search for one built target (each target may declare its own
            search space, :attr:`targets.Target.best_search`); its budget, sampler and space are
            recorded in every row.
        eps_list: the sweep's sizes, ascending.
        stop_at_first_success: an image's larger eps are left once one succeeded.
        sources: the images; ``working_width``: their width in pixels (``None``: as they are).
        storage: where the studies are kept.
        run_dir: the run folder (held by the caller).
        report_settings: the run's settings as plain values, for ``report.md``.
        progress: show the progress bar.
    """

    def __init__(
        self,
        *,
        targets: Mapping[str, Callable[[], Target]],
        goal_rule: GoalRule,
        norm: str,
        success: str,
        spec_for: Callable[[Target], SearchSpec],
        eps_inf: float | None = None,
        eps_list: Sequence[float],
        stop_at_first_success: bool,
        sources: Sequence[ImageSource],
        working_width: int | None,
        storage: StorageSettings,
        run_dir: Path,
        report_settings: Mapping,
        progress: bool = True,
    ) -> None:
        self.targets = dict(targets)
        self.goal_rule, self.norm, self.success, self.eps_inf = goal_rule, norm, success, eps_inf
        self.spec_for = spec_for
        self.eps_list = list(eps_list)
        self.stop = bool(stop_at_first_success)
        self.sources, self.working_width = list(sources), working_width
        self.storage = storage
        self.run_dir = run_dir
        self.report_settings = report_settings
        self.progress = progress
        self.table = RobustnessTable(run_dir / "results.csv")
        self.skipped: dict[str, str] = {}

    def run(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        storage = make_storage(self.storage.kind, self.run_dir, url=self.storage.url)
        per_image = len(self.eps_list)
        bar = tqdm(
            total=len(self.targets) * len(self.sources) * per_image,
            desc="robustness",
            disable=not self.progress,
        )
        for name, build in self.targets.items():
            target = build()
            spec = self.spec_for(target)
            pipeline = Pipeline(
                target=target,
                target_name=name,
                goal_rule=self.goal_rule,
                norm=self.norm,
                eps_inf=self.eps_inf,
                success=self.success,
            )
            for source, loaded in iterate(self.sources, self.working_width):
                bar.set_postfix_str(f"{name} {source.image_id}", refresh=False)
                if isinstance(loaded, ImageLoadError):
                    self.skipped[source.image_id] = str(loaded)
                else:
                    self._sweep(pipeline, spec, loaded, storage)
                bar.update(per_image)  # also the eps a success (or a skip) left unattacked
        bar.close()
        (self.run_dir / "skipped.json").write_text(json.dumps(self.skipped, indent=2))
        report = write_robustness_report(self.run_dir, self.table.rows, self.skipped, self.report_settings)
        print(report)
        print(f"\nrun folder: {self.run_dir}")
        if self.skipped:
            print(
                f"{len(self.skipped)} image(s) or attack(s) skipped; reasons in skipped.json", file=sys.stderr
            )
        if not self.table.rows:
            return EXIT_NOTHING_DONE
        return EXIT_SKIPPED if self.skipped else EXIT_OK  # as a run: 3 says some input was left out

    def _sweep(self, pipeline: Pipeline, spec: SearchSpec, loaded: LoadedImage, storage) -> None:
        """Every eps on one image against one target, from the smallest; rows already there are kept."""
        name = pipeline.target_name
        done = self.table.done(name, loaded.image_id)
        if self.stop and any(done.values()):
            return  # its smallest eps was found in an earlier session
        if all(round(e, 6) in done for e in self.eps_list):
            return
        try:  # a service down, a non-finite map, every clean crop showing the goal: skipped and named
            clean = pipeline.clean(loaded)
            goal = pipeline.goal(clean)
        except ImageSkipped as error:
            self.skipped[f"{name}/{loaded.image_id}"] = error.reason
            return
        for eps in self.eps_list:
            succeeded = done.get(round(eps, 6))
            if succeeded is None:
                succeeded = self._attack(pipeline, spec, clean, goal, eps, storage)
            if succeeded and self.stop:
                return

    def _attack(
        self, pipeline: Pipeline, spec: SearchSpec, clean: Clean, goal, eps: float, storage
    ) -> bool | None:
        """One attack; its row appended. ``None`` when it failed (named in ``skipped.json``)."""
        name, image_id = pipeline.target_name, clean.image.image_id
        try:
            outcome = pipeline.attack(spec.build(storage=storage), clean, goal, eps=eps)
        except ImageSkipped as error:  # a re-run retries it
            self.skipped[f"{name}/{image_id}/eps={eps:g}"] = error.reason
            return None
        folder = self.run_dir / "adversarial" / name / f"eps{eps:g}"
        save_png(outcome.result.adversarial, folder / f"{image_id}.png")
        (folder / f"{image_id}.json").write_text(json.dumps(outcome.record, allow_nan=False))
        self.table.append(row_from_record(outcome.record, spec=spec))
        return bool(outcome.record["success"])
