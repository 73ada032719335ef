"""``python -m blackbox.compare target=<name> ...``: every method on the same images and goals.

Each image is loaded and queried once; its goal comes from the measuring target's clean map
(``measure=``, default the target itself, as the paper scored on DeepGaze II). If the dataset asks for
it, the paper's selection protocol drops images first (:mod:`blackbox.evaluate.selection`). Then every method
in ``methods`` attacks it at every ``eps`` in ``eps_list``:

* white-box methods (``conf/attack/``: the paper's baselines, ``iterative_fgm``, ``pgd``) craft on
  the target's gradients, or on ``whitebox_target`` when the target gives none (a transfer attack);
* black-box methods (``conf/sampler/``: ``tpe``, ``random``, ``cmaes``, ``gp``) spend up
  to ``budget`` queries; with ``early_stop`` a success ends the search, so one run gives the whole
  success-against-queries curve (success within q queries = first success at or before q).

The smallest successful perturbation per image and method is the smallest L2 among its successful
images; white-box methods also bisect on ``eps`` between their last failing and first successful
sweep size (``smallest_eps.bisection_steps`` extra attacks; black-box methods, at hundreds of queries
an attack, do not).

Every finished attack is one row of ``results.csv``, appended at once: an interrupted comparison,
re-run with the same ``hydra.run.dir``, skips the rows it has and resumes the black-box studies
from their journal. ``report.md`` and the figures are rebuilt from ``results.csv`` at the end.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

from tqdm.auto import tqdm

from blackbox.core.datasets import ImageSource, iterate
from blackbox.core.goal import Goal
from blackbox.core.images import ImageLoadError, save_png
from blackbox.evaluate.report import write_report
from blackbox.evaluate.selection import SelectionReport, SelectionRules, rejection
from blackbox.experiment.attack_spec import AttackSpec
from blackbox.experiment.csv_results import CsvResults
from blackbox.experiment.options import StorageSettings
from blackbox.experiment.pipeline import Clean, ImageSkipped, Pipeline
from blackbox.experiment.record import csv_row
from blackbox.experiment.run import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SKIPPED
from blackbox.experiment.storage import make_storage
from targets import Capability, DifferentiableTarget, MissingCapabilityError, require

# What to do when a method needs what the target lacks (compare's own setting for it).
STAND_IN = (
    "set whitebox_target=<a zoo target that gives gradients, e.g. classic> to craft there and score on "
    "this one (a transfer attack)"
)

#: The columns of ``results.csv``, one row per (image, method, eps) attack.
COLUMNS = (
    "image",
    "method",
    "family",
    "eps",
    "eps_inf",
    "bisection",
    "success",
    "clean_in_goal",
    "shift_pct_distance",
    "shift_pct_width",
    "queries",
    "queries_to_success",
    "crops_showing_goal",
    "clean_crops_showing_goal",
    "crops",
    "l2",
    "linf",
    "linf_levels",
    "psnr",
    "ssim",
    "ssimulacra2",
    "goal_source",
    "target",
    "crafted_on",
    "measure",
)


class ResultsTable(CsvResults):
    """``results.csv``: rows appended and flushed one by one, so an interruption loses none."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            path,
            columns=COLUMNS,
            required=("image", "method", "eps", "bisection", "success"),
            flags=("bisection",),
        )
        self._done = {
            self.key(r["image"], r["method"], float(r["eps"]), r["bisection"] == "True") for r in self.rows
        }

    @staticmethod
    def key(image: str, method: str, eps: float, bisection: bool) -> tuple:
        return (image, method, round(eps, 6), bisection)

    def has(self, image: str, method: str, eps: float, bisection: bool = False) -> bool:
        return self.key(image, method, eps, bisection) in self._done

    def append(self, row: dict) -> None:
        super().append(row)
        self._done.add(self.key(row["image"], row["method"], float(row["eps"]), bool(row["bisection"])))

    def for_image(self, image: str, method: str) -> list[dict]:
        return [r for r in self.rows if r["image"] == image and r["method"] == method]


def row_from_record(record: Mapping, method: AttackSpec, *, bisection: bool, crafted_on: str) -> dict:
    """The ``results.csv`` row of one attack's record (:func:`~blackbox.experiment.record.csv_row`)."""
    return csv_row(
        record,
        COLUMNS,
        method=method.name,
        family=method.family,
        bisection=bisection,
        crafted_on=crafted_on,
        measure=record.get("measure") or record["target"],
    )


class Comparison:
    """One comparison run: every method at every eps on each selected image, through one pipeline.

    Args:
        pipeline: the target, its goal rule, norm, success rule and ``measure``.
        methods: the attacks compared, in report order.
        eps_list: the sweep's sizes, ascending.
        bisection_steps: white-box extra attacks bisecting eps below the first success (>= 0).
        rules: the paper's image selection, on the scoring target's clean map.
        crafter: what white-box methods take gradients of when the target gives none (``whitebox_target``),
            and its name; ``None`` skips them on such a target.
        sources: the images; ``working_width``: their width in pixels (``None``: as they are).
        storage: where the black-box studies are kept.
        run_dir: the run folder (held by the caller).
        report_settings: the run's settings as plain values, for ``report.md`` (budget, norm, examples).
        progress: show the progress bar.
    """

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        methods: Sequence[AttackSpec],
        eps_list: Sequence[float],
        bisection_steps: int,
        rules: SelectionRules,
        crafter: tuple[DifferentiableTarget, str] | None,
        sources: Sequence[ImageSource],
        working_width: int | None,
        storage: StorageSettings,
        run_dir: Path,
        report_settings: Mapping,
        progress: bool = True,
    ) -> None:
        self.pipeline = pipeline
        self.methods = list(methods)
        self.eps_list = list(eps_list)
        self.bisection_steps = int(bisection_steps)
        self.rules = rules
        if Capability.GRADIENTS in pipeline.target.capabilities:
            crafter = (cast(DifferentiableTarget, pipeline.target), pipeline.target_name)
        self.crafter, self.crafter_name = crafter if crafter is not None else (None, "")
        self.sources, self.working_width = list(sources), working_width
        self.storage = storage
        self.run_dir = run_dir
        self.report_settings = report_settings
        self.progress = progress
        self.table = ResultsTable(run_dir / "results.csv")

    def run(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        storage = make_storage(self.storage.kind, self.run_dir, url=self.storage.url)
        selection = SelectionReport(enabled=self.rules.enabled)
        skipped: dict[str, str] = {}
        per_image = len(self.methods) * len(self.eps_list)
        bar = tqdm(total=len(self.sources) * per_image, desc="compare", disable=not self.progress)
        for source, loaded in iterate(self.sources, self.working_width):
            if isinstance(loaded, ImageLoadError):
                skipped[source.image_id] = str(loaded)
                bar.update(per_image)
                continue
            try:
                clean = self.pipeline.clean(loaded)  # a service down, a non-finite map: skipped and named
            except ImageSkipped as error:
                skipped[loaded.image_id] = error.reason
                bar.update(per_image)
                continue
            reason = rejection(clean.measured.log_density, self.rules)
            selection.add(loaded.image_id, reason)
            if reason is not None:
                bar.update(per_image)
                continue
            try:
                goal = self.pipeline.goal(clean)
            except ImageSkipped as error:
                skipped[loaded.image_id] = error.reason
                bar.update(per_image)
                continue
            save_png(loaded.pixels, self.run_dir / "clean" / f"{loaded.image_id}.png")
            for method in self.methods:
                for eps in self.eps_list:
                    self._attack(method, clean, goal, eps, storage, bisection=False, skipped=skipped)
                    bar.update(1)
                if method.family == "white-box":
                    self._bisect(method, clean, goal, storage, skipped)
        bar.close()
        (self.run_dir / "selection.json").write_text(
            json.dumps({**selection.as_dict(), "skipped": skipped}, indent=2)
        )
        report = write_report(self.run_dir, self.table.rows, selection, skipped, self.report_settings)
        print(report)
        print(f"\nrun folder: {self.run_dir}")
        if skipped:
            print(f"{len(skipped)} image(s) or attack(s) skipped; reasons in selection.json", file=sys.stderr)
        if not self.table.rows:
            return EXIT_NOTHING_DONE
        return EXIT_SKIPPED if skipped else EXIT_OK  # as a run: 3 says some input was left out

    def _attack(
        self,
        method: AttackSpec,
        clean: Clean,
        goal: Goal,
        eps: float,
        storage,
        *,
        bisection: bool,
        skipped: dict[str, str],
    ) -> dict | None:
        image_id = clean.image.image_id
        if self.table.has(image_id, method.name, eps, bisection):
            return None
        attack = method.build(storage=storage)
        crafter, crafted_on = None, self.pipeline.target_name
        try:
            require(
                self.pipeline.target,
                attack.requires,
                by=method.name,
                name=self.pipeline.target_name,
                advice=STAND_IN,
            )
        except MissingCapabilityError as error:
            if self.crafter is None:
                skipped[f"{image_id}/{method.name}"] = str(error)
                return None
            # Craft on the stand-in, measure on what was asked (the target unless measure= says otherwise).
            crafter, crafted_on = self.crafter, self.crafter_name
        try:
            outcome = self.pipeline.attack(attack, clean, goal, eps=eps, crafter=crafter)
        except ImageSkipped as error:  # a re-run retries it
            skipped[f"{image_id}/{method.name}/eps={eps:g}"] = error.reason
            return None
        row = row_from_record(outcome.record, method, bisection=bisection, crafted_on=crafted_on)
        if not bisection:
            folder = self.run_dir / "adversarial" / method.name / f"eps{eps:g}"
            save_png(outcome.result.adversarial, folder / f"{image_id}.png")
            (folder / f"{image_id}.json").write_text(json.dumps(outcome.record, allow_nan=False))
        self.table.append(row)
        return row

    def _bisect(self, method: AttackSpec, clean: Clean, goal: Goal, storage, skipped: dict[str, str]) -> None:
        """Bisection on eps between the last failing and the first successful sweep size."""
        image_id = clean.image.image_id
        rows = [r for r in self.table.for_image(image_id, method.name) if r["bisection"] == "False"]
        successes = sorted(float(r["eps"]) for r in rows if r["success"] == "True")
        if not successes or self.bisection_steps <= 0:
            return
        high = successes[0]
        failures = [float(r["eps"]) for r in rows if r["success"] == "False" and float(r["eps"]) < high]
        low = max(failures, default=0.0)
        for _ in range(self.bisection_steps):
            middle = round((low + high) / 2, 4)
            row = self._attack(method, clean, goal, middle, storage, bisection=True, skipped=skipped)
            if row is None:  # done in an earlier session: read its outcome back
                done = [
                    r
                    for r in self.table.for_image(image_id, method.name)
                    if r["bisection"] == "True" and abs(float(r["eps"]) - middle) < 1e-6
                ]
                if not done:
                    return
                succeeded = done[0]["success"] == "True"
            else:
                succeeded = bool(row["success"])
            low, high = (low, middle) if succeeded else (middle, high)
