"""The Python API: :func:`attack` one image or a batch, from a notebook or a script (``blackbox.attack``).

The same defaults, checks and attack as ``python -m blackbox``: the settings are composed from
``conf/`` as the command line composes them and checked by the same pre-flight, turned into the same
typed objects (:mod:`blackbox.settings.build`) and run through the same per-image
:class:`~blackbox.experiment.pipeline.Pipeline`. Trials are kept in memory unless ``storage=`` names
a journal file or a database URL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import optuna

from blackbox.core.image_input import ImageInput, load_images
from blackbox.experiment.artifacts import TrialArtifacts
from blackbox.experiment.pipeline import ImageSkipped, Outcome, Skipped
from blackbox.experiment.storage import journal_storage
from blackbox.settings.auto import resolved_for
from blackbox.settings.build import attack_spec, run_options
from blackbox.settings.checks import ConfigError
from blackbox.settings.commands import pipeline_for
from blackbox.settings.preflight import compose_overrides, preflight
from targets import CropperFunction, FunctionTarget, Target, UnknownChoiceError
from targets._zoo import group_names, instantiate_target


def attack(
    images: ImageInput | Sequence[ImageInput],
    *,
    target: str | Target | CropperFunction = "classic",
    budget: int = 200,
    eps: float = 20.0,
    norm: str = "l2",
    eps_inf: int | None = 4,
    method: str = "auto",
    success: str = "auto",
    goal_box: Sequence[float] | None = None,
    goal_point: Sequence[float] | None = None,
    measure: str | None = None,
    working_width: int | None = 640,
    seed: int = 0,
    storage: str | os.PathLike | None = None,
    progress: bool = False,
    settings: Sequence[str] = (),
) -> Outcome | list[Outcome | Skipped]:
    """Attack one image or a batch: move where ``target`` crops it, within ``budget`` queries and ``eps``.

    Args:
        images: one image or a batch, in any of these forms (the same picture gives the same result in
            every form; :mod:`blackbox.core.image_input`): a file path; a PIL image; a numpy array or a
            torch tensor, ``(H, W)`` gray, ``(H, W, C)`` or ``(C, H, W)`` with C 1, 3 or 4 (RGBA is
            composited on white), uint8 or floats in [0, 1]. A batch is a list of those, or an
            ``(N, H, W, C)`` / ``(N, C, H, W)`` array or tensor. Each is resized to ``working_width`` and
            quantised to 8 bits as the command line does.
        target: a zoo name (``classic``, ``twitter``, ``vips_attention``...), a :class:`targets.Target`,
            or a function ``f(image) -> dict`` (one ``(H, W, 3)`` float image in [0, 1] in; any of the
            HTTP protocol's keys out: ``saliency``, an ``(H, W)`` array; ``salient_point``, ``(x, y)``;
            ``crops``, ``[{"aspect_ratio": r, "box": [left, top, width, height]}, ...]``;
            :class:`targets.FunctionTarget`).
        budget: target queries the black-box search may spend per image (the clean query is extra).
        eps: the perturbation's L2 norm, pixels in [0, 1], at the working resolution (``norm="linf"``:
            the L-inf bound, a fraction of the range). At the original size the L2 allowed is
            ``eps * sqrt(original pixels / working pixels)`` (:mod:`blackbox.core.full_size`).
        norm: ``l2`` or ``linf``.
        eps_inf: the L-inf cap beside ``eps``, in 8-bit levels (1 to 255; ``None``: none). The default,
            4 levels, is what a person does not see side by side at 100% (README, *How small*); the
            cap is the same at every size.
        method: ``auto`` (the default: the black-box search the target declares,
            :attr:`targets.Target.best_search`: ``square`` on a saliency-map target, the patch search
            with ``grid`` on a cropper without a map), an attack: ``square`` (L-inf squares under the
            cap), its baselines (``square_attack``, ``parsimonious``, ``simba_dct``, ``bandits``), a white-box
            attack (``iterative_fgm``, ``pgd``...: needs a differentiable target), or a sampler of the
            patch search (``tpe``, ``random``, ``cmaes``, ``gp``; ``search=`` in
            ``settings`` picks its space).
        success: ``auto`` | ``point`` | ``crops`` | ``any_crop`` (docs/attack.md, *Success rules*).
        goal_box: ``[x0, y0, x1, y1]`` in the original image's pixels to move the crop to; ``goal_point``:
            ``[x, y]``; neither: the paper's protocol.
        measure: a zoo name to score the result on instead of ``target`` (a transfer measurement).
        working_width: the width images are attacked at (``None`` keeps each image's size).
        seed: the search's seed (the same seed gives the same trials and the same image).
        storage: ``None`` (default): trials in memory; a path: an Optuna journal file there (re-running
            with it resumes the study); a URL with ``://``: an Optuna RDB storage (``sqlite:///x.db``).
        progress: show the search's progress bar.
        settings: any other command-line setting, ``key=value`` (``search=patches``, ``batch_size=8``).

    Returns:
        For one image, an :class:`~blackbox.experiment.pipeline.Outcome`: ``success``, ``queries``,
        ``adversarial`` (uint8 at the original size), ``goal_box`` and the salient points in the
        original's pixels, ``show()`` / ``save(path)`` for the side-by-side picture, and the
        attack's own ``result`` and ``record`` (the ``results.jsonl`` line) on the working copy. For a
        batch, a list with one entry per image, in order: its ``Outcome``, or a
        :class:`~blackbox.experiment.pipeline.Skipped` saying why it could not be attacked.

    Raises:
        ConfigError: a bad setting (the message names it and what to use), or a white-box method on a
            target without gradients.
        UnknownChoiceError: ``target``, ``measure`` or ``method`` is not a name the project knows (the
            message lists the choices); a :class:`ConfigError`.
        ImageLoadError: an image cannot be used (the message says why and what is accepted).
        ImageSkipped: one image (not a batch) cannot be attacked (e.g. every clean crop already shows
            the goal, or the target failed to answer); ``reason`` says why.
    """
    if callable(target) and not isinstance(target, (str, Target)):
        target = FunctionTarget(target)
    overrides = _overrides(
        target=target,
        budget=budget,
        eps=eps,
        norm=norm,
        eps_inf=eps_inf,
        method=method,
        success=success,
        goal_box=goal_box,
        goal_point=goal_point,
        measure=measure,
        working_width=working_width,
        seed=seed,
        progress=progress,
    )
    overrides += list(settings)
    preflight(overrides)  # the command line's checks: names, ranges, the search space, constructors
    cfg = compose_overrides(overrides)
    options = run_options(cfg)
    loaded, batch = load_images(images, working_width=options.working_width)
    if isinstance(target, str):  # built from the composed settings: every target.* of ``settings`` counts
        target_name, target = target, instantiate_target(cfg.target)
    else:
        target_name = str(getattr(target, "name", type(target).__name__))
    pipeline = pipeline_for(options, target, target_name)  # the command line's own
    cfg = resolved_for(cfg, target)  # method="auto", search=auto: the target's best search
    built = attack_spec(cfg).build(
        storage=_storage(storage),
        # the per-trial attributes the command line sets (no artifact images: there is no run folder)
        trial_callbacks=[TrialArtifacts(store=None, mode="none")],
    )
    pipeline.check(built)
    if options.torch_threads:  # only when asked (settings=["torch_threads=1"]), as the command line does
        import torch

        torch.set_num_threads(options.torch_threads)
    # Optuna logs every trial at INFO; quiet it for this call only, as the command line does for its run.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if not batch:
            return pipeline.run(built, loaded[0], eps=options.eps)
        outcomes: list[Outcome | Skipped] = []
        for image in loaded:
            try:
                outcomes.append(pipeline.run(built, image, eps=options.eps))
            except ImageSkipped as skipped:
                outcomes.append(Skipped(image.image_id, skipped.reason))
        return outcomes
    finally:
        optuna.logging.set_verbosity(verbosity)


def _overrides(**values: object) -> list[str]:
    """The keyword arguments as command-line overrides (``method`` picks the sampler or the attack)."""
    method = str(values.pop("method"))
    if method in group_names("sampler"):  # the patch search (attack=blackbox) with this sampler
        overrides = ["attack=blackbox", f"sampler={method}"]
    elif method in set(group_names("attack")) - {"blackbox"}:
        overrides = [f"attack={method}"]
    else:
        attacks = ", ".join(n for n in group_names("attack") if n != "blackbox")
        raise UnknownChoiceError(
            f"unknown method {method!r}; attacks: {attacks}; "
            f"the patch search with a sampler: {', '.join(group_names('sampler'))}"
        )
    target = values.pop("target")
    if isinstance(target, str):
        overrides.append(f"target={target}")
    elif not isinstance(target, Target):
        raise ConfigError(
            f"target must be a zoo name, a targets.Target or a cropper function, got {type(target).__name__}"
        )
    box, point = values.pop("goal_box"), values.pop("goal_point")
    if box is not None:
        overrides.append(f"goal.box=[{','.join(str(float(v)) for v in box)}]")  # type: ignore[union-attr]
    if point is not None:
        overrides.append(f"goal.point=[{','.join(str(float(v)) for v in point)}]")  # type: ignore[union-attr]
    for key, value in values.items():
        text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        overrides.append(f"{key}={text}")
    return [*overrides, "storage=memory"]  # the trials' storage is the API's own (``storage=``)


def _storage(storage: str | os.PathLike | None) -> optuna.storages.BaseStorage | str | None:
    if storage is None:
        return None  # Optuna's in-memory storage
    if isinstance(storage, str) and "://" in storage:
        return storage
    return journal_storage(Path(storage).expanduser())
