"""``python -m blackbox.robustness targets=[...] eps_list=[...]``: which cropper is easiest to steer.

The black-box attack of ``python -m blackbox`` (the configured ``sampler`` and ``search``, ``budget``
queries, early stop at the first success) runs on every target of ``targets`` (zoo names; ``http``
for any cropper behind the HTTP protocol, set through ``target_settings.http``), on every image of
the dataset, at every eps of ``eps_list`` from the smallest up. Each target sets its own goal from
its own clean answer (:func:`~blackbox.experiment.run.make_goal`) and
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

import copy
import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from blackbox.attacks import AttackFailedError, AttackProblem
from blackbox.core.datasets import iterate, sources_from_config
from blackbox.core.images import ImageLoadError, LoadedImage, save_png
from blackbox.evaluate.compare import _eps_list
from blackbox.evaluate.robustness_report import write_robustness_report
from blackbox.experiment.csv_results import CsvResults
from blackbox.experiment.run import (
    EXIT_NOTHING_DONE,
    EXIT_OK,
    EXIT_SKIPPED,
    attack_image,
    make_attack,
    make_goal,
)
from blackbox.experiment.run_folder import working_in
from blackbox.settings.checks import ConfigError, check_run_config
from targets import Target, TargetQueryError
from targets._zoo import group_config, group_names, instantiate_target

#: The columns of ``results.csv``, one row per (target, image, eps) attack.
COLUMNS = (
    "target",
    "image",
    "eps",
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
    "psnr",
    "ssim",
    "goal_source",
    "sampler",
    "budget",
)


def target_names(cfg: DictConfig) -> list[str]:
    """``targets``, each a zoo name; raises :class:`ConfigError` naming the choices otherwise."""
    targets = cfg.get("targets")
    if isinstance(targets, str) or not targets:
        raise ConfigError(
            f"targets must be a list of zoo names, e.g. targets=[classic,vips_entropy], got {targets!r}"
        )
    names = [str(t) for t in targets]
    zoo = group_names("target")
    unknown = [n for n in names if n not in zoo]
    if unknown:
        raise ConfigError(f"unknown target(s) {', '.join(unknown)} in targets; the zoo: {', '.join(zoo)}")
    if len(set(names)) < len(names):
        raise ConfigError(f"targets names one twice: {names}; name each once")
    return names


def check_robustness_config(cfg: DictConfig) -> None:
    """The report's own settings, checked before any folder, target or image (exit 2 if bad).

    The run's settings are checked by :func:`blackbox.settings.preflight.preflight`, which calls this.
    """
    target_names(cfg)
    _eps_list(cfg)
    if cfg.attack.name != "blackbox":
        raise ConfigError(
            f"the robustness report runs the black-box attack; attack={cfg.attack.name} is white-box "
            "(drop it; choose the search with sampler= and search=)"
        )
    if not isinstance(cfg.get("stop_at_first_success"), bool):
        raise ConfigError(
            f"stop_at_first_success must be true or false, got {cfg.get('stop_at_first_success')!r}"
        )
    settings = cfg.get("target_settings") or {}
    if not isinstance(settings, DictConfig):
        raise ConfigError(
            "target_settings must map a target to its settings, e.g. target_settings.http.url=..."
        )
    for name in settings:
        if str(name) not in group_names("target"):
            raise ConfigError(
                f"target_settings.{name}: {name} is not a zoo target; "
                f"the zoo: {', '.join(group_names('target'))}"
            )
    for name in settings:
        target_config(cfg, str(name))  # an unknown key shows now, not after the first target's attacks


def target_config(cfg: DictConfig, name: str) -> DictConfig:
    """The run config with ``target`` replaced by ``conf/target/<name>.yaml`` and its ``target_settings``.

    Raises :class:`ConfigError` for a ``target_settings`` key the target's file does not have.
    """
    target = group_config("target", name)
    extra = (cfg.get("target_settings") or {}).get(name)
    if extra:
        unknown = [str(k) for k in extra if str(k) not in target]
        if unknown:
            raise ConfigError(
                f"target_settings.{name}.{unknown[0]} is not a setting of target {name}; "
                f"its settings: {', '.join(str(k) for k in target if k != '_target_')}"
            )
        target = OmegaConf.merge(target, extra)
    config = copy.deepcopy(cfg)
    OmegaConf.set_struct(config, False)  # Hydra's struct mode forbids swapping a whole group
    config.target = target
    return config


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


def row_from_record(record: dict, *, sampler: str, budget: int) -> dict:
    """The ``results.csv`` row of one attack's ``results.jsonl`` record."""
    crops = record["crop_contains_goal"]
    return {
        **{k: record.get(k) for k in COLUMNS},
        "goal_source": record["goal"]["source"],
        "crops_showing_goal": sum(crops.values()),
        "clean_crops_showing_goal": sum(record["clean_crop_contains_goal"].values()),
        "crops": len(crops),
        "sampler": sampler,
        "budget": budget,
    }


class Robustness:
    """The state of one robustness run: targets, images, eps sweep, results table."""

    def __init__(self, cfg: DictConfig, run_dir: Path, *, targets: dict[str, Target] | None = None) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.names = target_names(cfg)
        self.eps_list = _eps_list(cfg)
        self.stop = bool(cfg.stop_at_first_success)
        self.targets = targets or {}  # tests hand in built targets; the rest are built when reached
        self.table = RobustnessTable(run_dir / "results.csv")
        self.skipped: dict[str, str] = {}

    def run(self) -> int:
        sources = sources_from_config(
            image=self.cfg.get("image"), dataset=OmegaConf.to_container(self.cfg.dataset)
        )  # type: ignore[arg-type]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        per_image = len(self.eps_list)
        bar = tqdm(
            total=len(self.names) * len(sources) * per_image,
            desc="robustness",
            disable=not self.cfg.get("progress", True),
        )
        for name in self.names:
            config = target_config(self.cfg, name)
            target = self.targets.get(name) or instantiate_target(config.target)
            for source, loaded in iterate(sources, self.cfg.get("working_width")):
                bar.set_postfix_str(f"{name} {source.image_id}", refresh=False)
                if isinstance(loaded, ImageLoadError):
                    self.skipped[source.image_id] = str(loaded)
                else:
                    self._sweep(config, name, target, loaded)
                bar.update(per_image)  # also the eps a success (or a skip) left unattacked
        bar.close()
        (self.run_dir / "skipped.json").write_text(json.dumps(self.skipped, indent=2))
        report = write_robustness_report(self.run_dir, self.table.rows, self.skipped, self.cfg)
        print(report)
        print(f"\nrun folder: {self.run_dir}")
        if self.skipped:
            print(
                f"{len(self.skipped)} image(s) or attack(s) skipped; reasons in skipped.json", file=sys.stderr
            )
        if not self.table.rows:
            return EXIT_NOTHING_DONE
        return EXIT_SKIPPED if self.skipped else EXIT_OK  # as a run: 3 says some input was left out

    def _sweep(self, config: DictConfig, name: str, target: Target, loaded: LoadedImage) -> None:
        """Every eps on one image against one target, from the smallest; rows already there are kept."""
        done = self.table.done(name, loaded.image_id)
        if self.stop and any(done.values()):
            return  # its smallest eps was found in an earlier session
        if all(round(e, 6) in done for e in self.eps_list):
            return
        try:
            clean = target.query([loaded.as_float])[0]
        except TargetQueryError as error:  # a service down, a non-finite map: skipped and named
            self.skipped[f"{name}/{loaded.image_id}"] = f"clean image: {error}"
            return
        try:
            goal = make_goal(config, loaded, clean)
        except ValueError as error:  # e.g. every clean crop already shows the goal
            self.skipped[f"{name}/{loaded.image_id}"] = str(error)
            return
        for eps in self.eps_list:
            succeeded = done.get(round(eps, 6))
            if succeeded is None:
                succeeded = self._attack(config, name, target, loaded, clean, goal, eps)
            if succeeded and self.stop:
                return

    def _attack(self, config, name, target, loaded, clean, goal, eps: float) -> bool | None:
        """One attack; its row appended. ``None`` when it failed (named in ``skipped.json``)."""
        attack = make_attack(OmegaConf.merge(config, {"eps": eps}), self.run_dir)  # type: ignore[arg-type]
        problem = AttackProblem(loaded, clean, goal, eps, str(config.norm), name, str(config.success))
        try:
            result, record = attack_image(attack, problem, target, None, clean, None)
        except (AttackFailedError, TargetQueryError) as error:  # a re-run retries it
            self.skipped[f"{name}/{loaded.image_id}/eps={eps:g}"] = str(error)
            return None
        folder = self.run_dir / "adversarial" / name / f"eps{eps:g}"
        save_png(result.adversarial, folder / f"{loaded.image_id}.png")
        (folder / f"{loaded.image_id}.json").write_text(json.dumps(record, allow_nan=False))
        self.table.append(
            row_from_record(record, sampler=str(config.sampler.name), budget=int(config.budget))
        )
        return bool(record["success"])


def robustness(cfg: DictConfig, run_dir: Path, *, targets: dict[str, Target] | None = None) -> int:
    """Run the robustness report in ``run_dir`` and return its exit code.

    The same checks as ``python -m blackbox`` come first (:class:`ConfigError` for a bad setting);
    one process at a time works in the folder (:func:`blackbox.experiment.run_folder.working_in`).
    """
    settings = OmegaConf.to_container(cfg, resolve=True)
    check_run_config(settings)  # type: ignore[arg-type]
    check_robustness_config(cfg)
    with working_in(run_dir, cfg):
        return Robustness(cfg, run_dir, targets=targets).run()
