"""``python -m blackbox.compare target=<name> ...``: every method on the same images and goals.

Each image is loaded and queried once; its goal comes from the measuring target's clean map
(``measure=``, default the target itself, as the paper scored on DeepGaze II). If the dataset asks for
it, the paper's selection protocol drops images first (:mod:`blackbox.evaluate.selection`). Then every method
in ``methods`` attacks it at every ``eps`` in ``eps_list``:

* white-box methods (``conf/attack/``: the paper's baselines, ``iterative_fgm``, ``pgd``) craft on
  the target's gradients, or on ``whitebox_target`` when the target gives none (a transfer attack);
* black-box methods (``conf/sampler/``: ``tpe``, ``random``, ``sparse_rs``, ``cmaes``, ``gp``) spend up
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

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from blackbox.attacks import Attack, AttackFailedError, AttackProblem, WhiteBoxAttack
from blackbox.core.datasets import iterate, sources_from_config
from blackbox.core.images import ImageLoadError, LoadedImage, save_png
from blackbox.evaluate.report import write_report
from blackbox.evaluate.selection import SelectionReport, SelectionRules, rejection
from blackbox.experiment.csv_results import CsvResults
from blackbox.experiment.run import (
    EXIT_NOTHING_DONE,
    EXIT_OK,
    EXIT_SKIPPED,
    attack_image,
    load_stand_in,
    make_attack,
    make_goal,
)
from blackbox.experiment.run_folder import working_in
from blackbox.settings.checks import ConfigError, check_eps, check_run_config
from blackbox.settings.zoo import (
    UnknownChoiceError,
    group_config,
    group_names,
    instantiate_target,
    load_target,
)
from targets import DifferentiableTarget, Target, TargetOutput, TargetQueryError

#: The columns of ``results.csv``, one row per (image, method, eps) attack.
COLUMNS = (
    "image",
    "method",
    "family",
    "eps",
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
    "psnr",
    "ssim",
    "goal_source",
    "target",
    "crafted_on",
    "measure",
)


@dataclass(frozen=True)
class Method:
    """One method of the comparison: its name, family and the config that builds its attack."""

    name: str
    family: str  # "white-box" or "black-box"
    config: DictConfig  # the run config with this method's attack (and sampler) in place

    def attack(self, eps: float, run_dir: Path) -> Attack:
        config = OmegaConf.merge(self.config, {"eps": eps})
        assert isinstance(config, DictConfig)
        return make_attack(config, run_dir)


def methods_from_config(cfg: DictConfig) -> list[Method]:
    """``methods`` resolved against ``conf/attack/`` (white-box) and ``conf/sampler/`` (black-box)."""
    white, black = set(group_names("attack")) - {"blackbox"}, set(group_names("sampler"))
    methods = []
    for name in cfg.methods:
        name = str(name)
        if name in white:
            attack = group_config("attack", name)
            config = _replacing(cfg, attack=attack)
            # conf/attack/ also holds black-box searches (attack=accumulate): no eps bisection for them.
            family = (
                "black-box" if str(attack.get("_target_", "")).startswith("blackbox.search.") else "white-box"
            )
        elif name in black:
            config = _replacing(cfg, attack={"name": "blackbox"}, sampler=group_config("sampler", name))
            family = "black-box"
        else:
            raise UnknownChoiceError(
                f"unknown method {name!r}; white-box: {', '.join(sorted(white))}; "
                f"black-box samplers: {', '.join(sorted(black))}"
            )
        methods.append(Method(name, family, config))
    if not methods:
        raise ConfigError("methods is empty: name at least one attack or sampler")
    return methods


def _replacing(cfg: DictConfig, **groups: object) -> DictConfig:
    """A copy of the run config with whole config groups swapped (Hydra's struct mode forbids merging)."""
    config = copy.deepcopy(cfg)
    OmegaConf.set_struct(config, False)
    for group, value in groups.items():
        config[group] = value
    return config


def _eps_list(cfg: DictConfig) -> list[float]:
    try:
        values = [float(e) for e in cfg.eps_list]
    except (TypeError, ValueError):
        raise ConfigError(f"eps_list must be numbers, e.g. eps_list=[10,20], got {cfg.eps_list}") from None
    if not values or any(not e > 0 for e in values):
        raise ConfigError(f"eps_list must be positive perturbation sizes, got {values}")
    for eps in values:
        check_eps(eps, str(cfg.norm), key="eps_list")
    return sorted(set(values))


def check_compare_config(cfg: DictConfig) -> None:
    """The comparison's own settings, checked before any folder, target or image (exit 2 if bad).

    The run's settings are checked by :func:`blackbox.settings.preflight.preflight`, which calls this.
    """
    methods_from_config(cfg)
    _eps_list(cfg)
    steps = cfg.smallest_eps.bisection_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"smallest_eps.bisection_steps must be a whole number >= 0, got {steps!r}")


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


def row_from_record(record: dict, method: Method, *, bisection: bool, crafted_on: str) -> dict:
    crops = record["crop_contains_goal"]
    return {
        **{k: record.get(k) for k in COLUMNS},
        "method": method.name,
        "family": method.family,
        "bisection": bisection,
        "goal_source": record["goal"]["source"],
        "crops_showing_goal": sum(crops.values()),
        "clean_crops_showing_goal": sum(record["clean_crop_contains_goal"].values()),
        "crops": len(crops),
        "crafted_on": crafted_on,
        "measure": record.get("measure") or record["target"],
    }


class Comparison:
    """The state of one comparison run: targets, methods, results table, progress."""

    def __init__(
        self, cfg: DictConfig, run_dir: Path, *, target_name: str, target: Target | None = None
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.target_name = target_name
        self.target = target if target is not None else instantiate_target(cfg.target)
        self.measure_name = str(cfg.measure) if cfg.get("measure") else None
        self.measure = (
            load_target(self.measure_name, aspect_ratios=cfg.aspect_ratios) if self.measure_name else None
        )
        self.methods = methods_from_config(cfg)
        self.eps_list = _eps_list(cfg)
        self.bisection_steps = int(cfg.smallest_eps.bisection_steps)
        self.rules = SelectionRules.from_config(cfg.selection)
        self.crafter, self.crafter_name = self._white_box_target()
        self.table = ResultsTable(run_dir / "results.csv")

    def _white_box_target(self) -> tuple[DifferentiableTarget | None, str]:
        """What white-box methods take gradients of: the target, else ``whitebox_target``."""
        if isinstance(self.target, DifferentiableTarget):
            return self.target, self.target_name
        name = self.cfg.get("whitebox_target")
        if not name:
            return None, ""
        return load_stand_in("whitebox_target", str(name), self.cfg.aspect_ratios), str(name)

    def run(self) -> int:
        sources = sources_from_config(
            image=self.cfg.get("image"), dataset=OmegaConf.to_container(self.cfg.dataset)
        )  # type: ignore[arg-type]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        selection = SelectionReport(enabled=self.rules.enabled)
        skipped: dict[str, str] = {}
        per_image = len(self.methods) * len(self.eps_list)
        bar = tqdm(total=len(sources) * per_image, desc="compare", disable=not self.cfg.get("progress", True))
        for source, loaded in iterate(sources, self.cfg.get("working_width")):
            if isinstance(loaded, ImageLoadError):
                skipped[source.image_id] = str(loaded)
                bar.update(per_image)
                continue
            try:
                clean = self.target.query([loaded.as_float])[0]
                measured_clean = self.measure.query([loaded.as_float])[0] if self.measure else clean
            except TargetQueryError as error:  # a service down, a non-finite map: skipped and named
                skipped[loaded.image_id] = f"clean image: {error}"
                bar.update(per_image)
                continue
            reason = rejection(measured_clean.log_density, self.rules)
            selection.add(loaded.image_id, reason)
            if reason is not None:
                bar.update(per_image)
                continue
            try:
                goal = make_goal(self.cfg, loaded, measured_clean)
            except ValueError as error:
                skipped[loaded.image_id] = str(error)
                bar.update(per_image)
                continue
            save_png(loaded.pixels, self.run_dir / "clean" / f"{loaded.image_id}.png")
            for method in self.methods:
                for eps in self.eps_list:
                    self._attack(
                        method, loaded, clean, measured_clean, goal, eps, bisection=False, skipped=skipped
                    )
                    bar.update(1)
                if method.family == "white-box":
                    self._bisect(method, loaded, clean, measured_clean, goal, skipped)
        bar.close()
        (self.run_dir / "selection.json").write_text(
            json.dumps({**selection.as_dict(), "skipped": skipped}, indent=2)
        )
        report = write_report(self.run_dir, self.table.rows, selection, skipped, self.cfg)
        print(report)
        print(f"\nrun folder: {self.run_dir}")
        if skipped:
            print(f"{len(skipped)} image(s) or attack(s) skipped; reasons in selection.json", file=sys.stderr)
        if not self.table.rows:
            return EXIT_NOTHING_DONE
        return EXIT_SKIPPED if skipped else EXIT_OK  # as a run: 3 says some input was left out

    def _attack(
        self,
        method: Method,
        loaded: LoadedImage,
        clean: TargetOutput,
        measured_clean: TargetOutput,
        goal,
        eps: float,
        *,
        bisection: bool,
        skipped: dict[str, str],
    ) -> dict | None:
        if self.table.has(loaded.image_id, method.name, eps, bisection):
            return None
        attack = method.attack(eps, self.run_dir)
        target, target_name, crafted_on = self.target, self.target_name, self.target_name
        measure, measure_name = self.measure, self.measure_name
        if isinstance(attack, WhiteBoxAttack) and attack.needs_gradients and self.target is not self.crafter:
            if self.crafter is None:
                skipped[f"{loaded.image_id}/{method.name}"] = (
                    f"{method.name} needs gradients and target={self.target_name} gives none: "
                    "set whitebox_target=<a differentiable zoo target> to craft there (a transfer attack)"
                )
                return None
            # Craft on the stand-in, measure on what was asked (the target unless measure= says otherwise).
            target, crafted_on = self.crafter, self.crafter_name
            clean = self.crafter.query([loaded.as_float])[0]
            measure = self.measure or self.target
            measure_name = self.measure_name or self.target_name
        problem = AttackProblem(loaded, clean, goal, eps, str(self.cfg.norm), target_name)
        try:
            result, record = attack_image(attack, problem, target, measure, measured_clean, measure_name)
        except (AttackFailedError, TargetQueryError) as error:  # a re-run retries it
            skipped[f"{loaded.image_id}/{method.name}/eps={eps:g}"] = str(error)
            return None
        row = row_from_record(record, method, bisection=bisection, crafted_on=crafted_on)
        if not bisection:
            folder = self.run_dir / "adversarial" / method.name / f"eps{eps:g}"
            save_png(result.adversarial, folder / f"{loaded.image_id}.png")
            (folder / f"{loaded.image_id}.json").write_text(json.dumps(record, allow_nan=False))
        self.table.append(row)
        return row

    def _bisect(self, method, loaded, clean, measured_clean, goal, skipped) -> None:
        """Bisection on eps between the last failing and the first successful sweep size."""
        rows = [r for r in self.table.for_image(loaded.image_id, method.name) if r["bisection"] == "False"]
        successes = sorted(float(r["eps"]) for r in rows if r["success"] == "True")
        if not successes or self.bisection_steps <= 0:
            return
        high = successes[0]
        failures = [float(r["eps"]) for r in rows if r["success"] == "False" and float(r["eps"]) < high]
        low = max(failures, default=0.0)
        for _ in range(self.bisection_steps):
            middle = round((low + high) / 2, 4)
            row = self._attack(
                method, loaded, clean, measured_clean, goal, middle, bisection=True, skipped=skipped
            )
            if row is None:  # done in an earlier session: read its outcome back
                done = [
                    r
                    for r in self.table.for_image(loaded.image_id, method.name)
                    if r["bisection"] == "True" and abs(float(r["eps"]) - middle) < 1e-6
                ]
                if not done:
                    return
                succeeded = done[0]["success"] == "True"
            else:
                succeeded = bool(row["success"])
            low, high = (low, middle) if succeeded else (middle, high)


def compare(cfg: DictConfig, run_dir: Path, *, target_name: str, target: Target | None = None) -> int:
    """Run a comparison in ``run_dir`` and return its exit code.

    The same checks as ``python -m blackbox`` come first; one process at a time works in the folder
    (:func:`blackbox.experiment.run_folder.working_in`), and ``torch_threads`` is honoured.
    """
    settings = OmegaConf.to_container(cfg, resolve=True)
    check_run_config(settings)  # type: ignore[arg-type]
    check_compare_config(cfg)
    with working_in(run_dir, cfg):
        return Comparison(cfg, run_dir, target_name=target_name, target=target).run()
