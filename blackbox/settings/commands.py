"""The three attacking commands at the edge: a composed Hydra config checked, turned into typed
objects once (:mod:`blackbox.settings.build`), and handed to the core.

``python -m blackbox`` calls :func:`run`, ``python -m blackbox.compare`` :func:`compare`,
``python -m blackbox.robustness`` :func:`robustness`; tests and benchmarks call them with a config
composed in-process. Each checks the settings first (:class:`ConfigError`), then holds its run folder
(:func:`~blackbox.experiment.run_folder.working_in`) while it builds targets and attacks. ``record``,
when given, writes the run's own record of its settings
(:func:`~blackbox.experiment.run_folder.record_settings`): called once the folder has accepted the
run, so a refused run changes nothing there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from blackbox.core.datasets import ImageSource, sources_from_config
from blackbox.evaluate.compare import Comparison
from blackbox.evaluate.robustness import Robustness
from blackbox.evaluate.selection import SelectionRules
from blackbox.experiment.attack_spec import SearchSpec
from blackbox.experiment.jsonl import read_records
from blackbox.experiment.options import RunOptions
from blackbox.experiment.pipeline import Pipeline
from blackbox.experiment.run import RunSummary, attack_images
from blackbox.experiment.run_folder import check_resume_settings, resume_settings, working_in
from blackbox.experiment.study import open_experiment
from blackbox.settings.auto import resolved_for, resolved_naming_search
from blackbox.settings.build import attack_spec, load_stand_in, run_options, storage_settings
from blackbox.settings.checks import check_run_config
from blackbox.settings.sweeps import (
    check_compare_config,
    check_robustness_config,
    eps_list,
    methods,
    target_config,
    target_names,
)
from targets import Target
from targets._zoo import instantiate_target, load

#: Writes the run's record of the config it is given (:func:`blackbox.settings.hydra_run.record_of`).
Record = Callable[[DictConfig], None]


def run(
    cfg: DictConfig,
    run_dir: Path,
    *,
    target_name: str,
    target: Target | None = None,
    record: Record | None = None,
) -> RunSummary:
    """Attack every image; write PNGs, ``results.jsonl``, ``errors.jsonl`` and ``summary.md``.

    One process at a time works in ``run_dir`` (see :mod:`blackbox.experiment.run_folder`); a folder left by a
    killed run resumes: finished images are kept, an image's finished trials are not redone. ``target``:
    a target built by the caller instead of ``cfg.target``; ``record``: see the module doc.
    """
    settings = OmegaConf.to_container(cfg, resolve=True)
    check_run_config(settings)  # type: ignore[arg-type]
    storage, options = storage_settings(cfg), run_options(cfg)
    with working_in(run_dir, journal=storage.kind == "journal", torch_threads=options.torch_threads):
        check_resume_settings(run_dir, resume_settings(cfg, target_name))
        for path in (run_dir / "results.jsonl", run_dir / "errors.jsonl"):
            read_records(path)  # a torn last line is set aside now, before anything is appended
        sources = _sources(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        target = target if target is not None else instantiate_target(cfg.target)
        cfg = resolved_for(cfg, target)  # attack=auto, search=auto: the target's best search
        pipeline = pipeline_for(options, target, target_name)
        spec = attack_spec(cfg)
        # Refused before the experiment makes its storage and artifact folder: nothing is left behind.
        pipeline.check(spec.build())
        experiment = open_experiment(storage, run_dir)  # storage, artifacts, which images are done
        if record is not None:
            record(cfg)
        return attack_images(
            pipeline=pipeline,
            spec=spec,
            options=options,
            sources=sources,
            experiment=experiment,
            run_dir=run_dir,
        )


def compare(
    cfg: DictConfig,
    run_dir: Path,
    *,
    target_name: str,
    target: Target | None = None,
    record: Record | None = None,
) -> int:
    """Run a comparison in ``run_dir`` and return its exit code.

    The same checks as ``python -m blackbox`` come first; one process at a time works in the folder
    (:func:`blackbox.experiment.run_folder.working_in`), and ``torch_threads`` is honoured.
    ``record``: see the module doc.
    """
    check_run_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    check_compare_config(cfg)
    storage, options = storage_settings(cfg), run_options(cfg)
    with working_in(run_dir, journal=storage.kind == "journal", torch_threads=options.torch_threads):
        target = target if target is not None else instantiate_target(cfg.target)
        cfg = resolved_for(cfg, target)  # search=auto: the target's best patch-search space
        built = comparison(cfg, run_dir, target_name=target_name, target=target)
        if record is not None:
            record(cfg)
        return built.run()


def comparison(
    cfg: DictConfig, run_dir: Path, *, target_name: str, target: Target | None = None
) -> Comparison:
    """The comparison ``cfg`` describes (its target, measure and stand-in built), not yet run.

    Raises:
        ConfigError, UnknownChoiceError: a bad ``methods``, ``eps_list`` or ``whitebox_target``.
    """
    options = run_options(cfg)
    target = target if target is not None else instantiate_target(cfg.target)
    cfg = resolved_for(cfg, target)
    crafter = None
    if cfg.get("whitebox_target") and not target.differentiable:
        name = str(cfg.whitebox_target)
        crafter = (load_stand_in("whitebox_target", name, options.aspect_ratios), name)
    return Comparison(
        # compare judges success by the scoring target's own rule (success=auto), as it always has
        pipeline=pipeline_for(options, target, target_name, success="auto"),
        methods=methods(cfg),
        eps_list=eps_list(cfg),
        bisection_steps=int(cfg.smallest_eps.bisection_steps),
        rules=SelectionRules.from_config(cfg.selection),
        crafter=crafter,
        sources=_sources(cfg),
        working_width=options.working_width,
        storage=storage_settings(cfg),
        run_dir=run_dir,
        report_settings=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
        progress=options.progress,
    )


def robustness(
    cfg: DictConfig,
    run_dir: Path,
    *,
    targets: dict[str, Target] | None = None,
    record: Record | None = None,
) -> int:
    """Run the robustness report in ``run_dir`` and return its exit code.

    The same checks as ``python -m blackbox`` come first (:class:`ConfigError` for a bad setting);
    one process at a time works in the folder (:func:`blackbox.experiment.run_folder.working_in`).
    ``targets``: targets built by the caller, by zoo name; the others are built when reached.
    ``record``: see the module doc.
    """
    check_run_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    check_robustness_config(cfg)
    storage, options = storage_settings(cfg), run_options(cfg)
    with working_in(run_dir, journal=storage.kind == "journal", torch_threads=options.torch_threads):
        built = robustness_sweep(cfg, run_dir, targets=targets)
        if record is not None:
            record(cfg)  # search=auto stays: each target resolves it (results.csv names each row's search)
        return built.run()


def robustness_sweep(
    cfg: DictConfig, run_dir: Path, *, targets: dict[str, Target] | None = None
) -> Robustness:
    """The robustness report ``cfg`` describes, not yet run; its targets are built when reached.

    Raises:
        ConfigError: ``results.csv`` in ``run_dir`` holds a row this command did not write.
    """
    options = run_options(cfg)
    given = targets or {}

    def builder(name: str):
        return lambda: given.get(name) or instantiate_target(target_config(cfg, name).target)

    return Robustness(
        targets={name: builder(name) for name in target_names(cfg)},
        goal_rule=options.goal,
        norm=options.norm,
        eps_inf=options.eps_inf,
        success=options.success,
        spec_for=lambda target: _search_spec(cfg, target),
        eps_list=eps_list(cfg),
        stop_at_first_success=bool(cfg.stop_at_first_success),
        sources=_sources(cfg),
        working_width=options.working_width,
        storage=storage_settings(cfg),
        run_dir=run_dir,
        report_settings=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
        progress=options.progress,
    )


def _search_spec(cfg: DictConfig, target: Target) -> SearchSpec:
    """The robustness report's patch search on one target (``search=auto``: the target's own space)."""
    config, search_name = resolved_naming_search(cfg, target.best_search)
    spec = attack_spec(config, search_name=search_name)
    assert isinstance(spec, SearchSpec)  # check_robustness_config holds attack=blackbox
    return spec


def _sources(cfg: DictConfig) -> list[ImageSource]:
    return sources_from_config(image=cfg.get("image"), dataset=OmegaConf.to_container(cfg.dataset))  # type: ignore[arg-type]


def pipeline_for(
    options: RunOptions, target: Target, target_name: str, *, success: str | None = None
) -> Pipeline:
    """The pipeline on ``target``; ``options.measure`` (a zoo name) scores on another model."""
    measure = options.measure
    return Pipeline(
        target=target,
        target_name=target_name,
        goal_rule=options.goal,
        norm=options.norm,
        eps_inf=options.eps_inf,
        success=options.success if success is None else success,
        measure=load(measure, aspect_ratios=options.aspect_ratios) if measure else None,
        measure_name=measure,
    )
