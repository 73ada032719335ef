"""``python -m blackbox.replay run=RUN_DIR image=ID [trial=N] [study=NAME] [out=FILE]``.

Re-renders a stored trial to its adversarial PNG from the trial's perturbation config alone (and the
run's image settings): the result is byte-identical to what the target was shown. Without
``trial=`` the study's best trial is replayed (the one saved under ``adversarial/``).

A compare folder (``python -m blackbox.compare``) holds one study per image, black-box method and
eps; where an image has several, ``study=NAME`` picks one (the error lists them). White-box
attacks (and the square search's baselines) keep no trials: their adversarial PNG is already in the
run folder, and replay says where. The square search keeps its trials; only its result's trial holds
the squares to replay (the others hold the parameters of the square each tried).
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import sys
from pathlib import Path

import optuna
from omegaconf import OmegaConf

from blackbox.core.datasets import sources_from_config
from blackbox.core.images import save_png
from blackbox.experiment.jsonl import read_records
from blackbox.experiment.storage import make_storage
from blackbox.search.search_space import render_config
from blackbox.settings.arguments import Setting, run_command
from targets import UserError


class ReplayError(UserError, ValueError):
    """A folder, image or trial that cannot be replayed; the message says which and what to do."""


def replay(
    run_dir: Path, image_id: str, trial_number: int | None, out: Path, *, study_name: str | None = None
) -> Path:
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.exists():
        raise ReplayError(f"{run_dir} is not a run folder: {config_path} is missing")
    try:
        cfg = OmegaConf.load(config_path)
    except Exception as error:  # YAML or OmegaConf errors: a damaged file, whatever the parser says
        raise ReplayError(
            f"{config_path} is damaged ({str(error).splitlines()[0]}): it holds the run's settings; "
            "restore it from a copy, or re-run the same command in a new folder"
        ) from None
    if cfg.storage.kind == "postgres":  # the experiment's schema in the shared database
        from blackbox.experiment.study import open_for_reading
        from blackbox.settings.build import storage_settings

        storage = open_for_reading(run_dir, storage_settings(cfg, recorded=run_dir / "experiment.json"))[0]
    else:
        storage = make_storage(str(cfg.storage.kind), run_dir, url=cfg.storage.get("url"))
    if storage is None:
        raise ReplayError("that run used storage=memory: its trials were not kept, nothing to replay")
    summaries = [s for s in optuna.get_all_study_summaries(storage) if s.user_attrs.get("image") == image_id]
    if not summaries:
        raise ReplayError(_no_study(run_dir, image_id, storage))
    # Study names hold '|' and spaces: quoted, so a line can be pasted into the shell as it is.
    names = "\n".join(f"  {study_setting(s.study_name)}    ({_label(s.user_attrs)})" for s in summaries)
    if study_name is not None:
        summaries = [s for s in summaries if s.study_name == study_name]
        if not summaries:
            raise ReplayError(
                f"no study named {study_name!r} for image {image_id!r} in {run_dir}; its studies:\n{names}"
            )
    elif len(summaries) > 1 and not _is_compare(run_dir):  # a staged search: one study per stage
        recorded = (_result_record(run_dir, image_id, {}) or {}).get("study")
        summaries = [s for s in summaries if s.study_name == recorded] or summaries
    if len(summaries) > 1:  # a compare run: one study per sampler and eps
        raise ReplayError(
            f"{image_id!r} has {len(summaries)} studies in {run_dir} (one per black-box method and eps, "
            "or per stage of a staged search); "
            f"pick one by adding one of these settings:\n{names}"
        )
    summary = summaries[0]
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    if trial_number is None:
        record = _result_record(run_dir, image_id, summary.user_attrs)
        if record is None or record.get("best_trial") is None:
            raise ReplayError(
                f"no finished result for {image_id!r} in study {summary.study_name!r} (its search was "
                "interrupted before it saved one); pass trial=N to replay one of its trials"
            )
        if record.get("study") not in (None, summary.study_name):  # a staged search's other stage
            raise ReplayError(
                f"the result for {image_id!r} came from study {record['study']!r}, not "
                f"{summary.study_name!r}: pass study= with that name, or trial=N for a trial of this one"
            )
        trial_number = int(record["best_trial"])
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if trial_number not in trials:
        numbers = f"0 to {max(trials)}" if trials else "none"
        raise ReplayError(
            f"trial {trial_number} does not exist for {image_id!r}: its study has {len(trials)} trials "
            f"(numbers {numbers})"
        )
    if "perturbation" not in trials[trial_number].user_attrs:
        state = trials[trial_number].state.name.lower()
        if "phase" in trials[trial_number].user_attrs:  # a square search's query (attack=square)
            raise ReplayError(
                f"trial {trial_number} of {image_id!r} is one query of the square search; only its result "
                f"(trial {_result_trial(run_dir, image_id, summary.user_attrs)}) keeps the squares it "
                "sent: replay it without trial="
            )
        raise ReplayError(
            f"trial {trial_number} of {image_id!r} has no stored perturbation config (it is {state}: "
            "never answered by the target); pick a completed trial"
        )
    config = trials[trial_number].user_attrs["perturbation"]
    source = next(
        (
            s
            for s in sources_from_config(image=cfg.get("image"), dataset=OmegaConf.to_container(cfg.dataset))  # type: ignore[arg-type]
            if s.image_id == image_id
        ),
        None,
    )
    if source is None:
        raise ReplayError(f"image {image_id!r} is not in the run's dataset any more")
    clean = source.load(cfg.get("working_width"))
    adversarial = render_config(clean.pixels, config)
    save_png(adversarial, out)
    return out


def _result_trial(run_dir: Path, image_id: str, attrs: dict) -> object:
    return (_result_record(run_dir, image_id, attrs) or {}).get("best_trial", "?")


def study_setting(name: str) -> str:
    """``study=NAME`` as the shell and Hydra both read it: quoted for Hydra (names hold ``|`` and
    spaces), inside the shell's quotes."""
    return shlex.quote('study="' + name + '"')


def _label(attrs: dict) -> str:
    return f"{attrs.get('sampler', '?')}, eps {attrs.get('eps', '?'):g}" if "eps" in attrs else "?"


def _is_compare(run_dir: Path) -> bool:
    return (run_dir / "results.csv").exists() and not (run_dir / "results.jsonl").exists()


def _compare_records(run_dir: Path, image_id: str) -> list[tuple[Path, dict]]:
    """A compare folder's saved records of an image: ``adversarial/<method>/eps<E>/<image>.json``."""
    found = []
    for path in sorted(run_dir.glob(f"adversarial/*/eps*/{glob.escape(image_id)}.json")):
        try:
            found.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):  # a damaged record is no result: the caller says so
            continue
    return found


def _result_record(run_dir: Path, image_id: str, attrs: dict) -> dict | None:
    """The finished result of the study with user attributes ``attrs`` (its ``best_trial``)."""
    if _is_compare(run_dir):  # one record per method and eps; the study's sampler and eps pick it
        return next(
            (
                r
                for _, r in _compare_records(run_dir, image_id)
                if r.get("method") == str(attrs.get("sampler")).split(":")[0]  # a stage: <sampler>:<stage>
                and abs(float(r.get("eps", -1)) - float(attrs.get("eps", -2))) < 1e-9
            ),
            None,
        )
    # read_records names a damaged line (exit 2), where json.loads would end in a traceback.
    return next((r for r in read_records(run_dir / "results.jsonl") if r.get("image") == image_id), None)


def _no_study(run_dir: Path, image_id: str, storage: optuna.storages.BaseStorage) -> str:
    """Why an image has no study: an attack that keeps no trials, or an unknown image."""
    if _is_compare(run_dir):
        pngs = [path.with_suffix(".png") for path, _ in _compare_records(run_dir, image_id)]
    else:
        attacked = (run_dir / "results.jsonl").exists() and any(
            r.get("image") == image_id for r in read_records(run_dir / "results.jsonl")
        )
        pngs = [run_dir / "adversarial" / f"{image_id}.png"] if attacked else []
    pngs = [p for p in pngs if p.exists()]
    if pngs:
        listed = "\n".join(f"  {p}" for p in pngs)
        return (
            f"{image_id!r} was attacked in {run_dir} by an attack that keeps no Optuna trials (a white-box "
            "attack, or the square search's baselines), so there is nothing to replay. "
            f"Its adversarial PNG is already saved:\n{listed}"
        )
    known = sorted({str(s.user_attrs.get("image")) for s in optuna.get_all_study_summaries(storage)})
    if not known:
        return f"no study for image {image_id!r} in {run_dir}: it holds no black-box trials at all"
    return f"no study for image {image_id!r} in {run_dir}; images there: {known}"


#: The settings ``python -m blackbox.replay`` takes.
SETTINGS = (
    Setting("run", "the run folder (or compare folder)", Path, required=True),
    Setting("image", "the image id, as in results.jsonl", str, required=True),
    Setting("trial", "trial number (default: the best, saved under adversarial/)", int),
    Setting("study", "study name, where an image has several (the error lists them)", str),
    Setting("out", "output PNG (default: <run>/replay/<image>.<trial>.png)", Path),
)


def main(argv: list[str] | None = None) -> int:
    return run_command(_main, argv, SETTINGS, prog="python -m blackbox.replay", description=__doc__ or "")


def _main(args: dict) -> int:
    run_dir, image, trial, study = args["run"], args["image"], args["trial"], args["study"]
    suffix = "best" if trial is None else f"trial{trial}"
    if study:  # one file per study: a compare folder's studies of one image would overwrite
        # The name after the image id (target, goal, size, sampler), made safe for a file name.
        suffix = re.sub(r"[^\w.=-]+", "_", study.split("|", 1)[-1]) + "." + suffix
    out = args["out"] or run_dir / "replay" / f"{image}.{suffix}.png"
    try:
        path = replay(run_dir, image, trial, out, study_name=study)
    except UserError as error:  # ReplayError, JsonlError, a missing or damaged input
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0
