"""``blackbox.settings.replay`` on the folders a newcomer points it at: compare folders, white-box runs."""

from __future__ import annotations

import contextlib
import io
import shlex
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from blackbox.settings.commands import comparison
from blackbox.settings.replay import main as replay_main
from tests.conftest import REPO
from tests.test_faults import SMALL, compose_overrides, quiet_run


def replays_to_the_saved_image(run_dir: Path, cfg, image_id: str) -> bool:
    """Save ``cfg`` as ``run_dir``'s ``.hydra/config.yaml`` (as the CLI does), replay ``image_id``
    without ``study=`` or ``trial=``, and say whether the PNG is the run's saved adversarial."""
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert replay_main([f"run={run_dir}", f"image={image_id}"]) == 0
    saved = run_dir / "adversarial" / f"{image_id}.png"
    return Path(out.getvalue().strip()).read_bytes() == saved.read_bytes()


def _compare(run_dir: Path, *overrides: str) -> None:
    """A small comparison in ``run_dir`` with the ``.hydra/config.yaml`` its CLI would write."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="compare",
            overrides=[
                "working_width=96",
                "dataset.names=[chelsea]",
                "budget=4",
                "batch_size=2",
                "smallest_eps.bisection_steps=0",
                "progress=false",
                *overrides,
            ],
        )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        comparison(cfg, run_dir, target_name="classic").run()
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")


def _replay(*argv: str) -> tuple[int, str, str]:
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = replay_main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_replay_of_a_compare_folder_replays_the_saved_best(tmp_path: Path) -> None:
    _compare(tmp_path, "methods=[iterative_fgm,random]", "eps_list=[20]")
    code, out, err = _replay(f"run={tmp_path}", "image=chelsea")
    assert code == 0, err
    saved = tmp_path / "adversarial" / "random" / "eps20" / "chelsea.png"
    assert Path(out.strip()).read_bytes() == saved.read_bytes()


def test_replay_of_a_compare_folder_with_several_studies_names_the_setting(tmp_path: Path) -> None:
    _compare(tmp_path, "methods=[random]", "eps_list=[2,20]")
    code, _, err = _replay(f"run={tmp_path}", "image=chelsea")
    assert code == 2 and "2 studies" in err
    listed = [line for line in err.splitlines() if "study=" in line]
    assert len(listed) == 2
    # A listed setting, pasted as it is, picks its study and replays the image saved for it.
    chosen = next(line.split("    (")[0].strip() for line in listed if "(random, eps 20)" in line)
    out_png = tmp_path / "r.png"
    code, _, err = _replay(f"run={tmp_path}", "image=chelsea", *shlex.split(chosen), f"out={out_png}")
    assert code == 0, err
    assert (
        out_png.read_bytes() == (tmp_path / "adversarial" / "random" / "eps20" / "chelsea.png").read_bytes()
    )
    # Without out=, each study's replay gets its own file.
    paths = set()
    for line in listed:
        code, out, err = _replay(f"run={tmp_path}", "image=chelsea", *shlex.split(line.split("    (")[0]))
        assert code == 0, err
        paths.add(out.strip())
    assert len(paths) == 2


def test_replay_of_a_white_box_run_says_it_has_no_trials_and_names_the_png(tmp_path: Path) -> None:
    overrides = ("dataset.names=[chelsea]", "attack=iterative_fgm")
    quiet_run(tmp_path, *overrides)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(compose_overrides([*SMALL, *overrides]), tmp_path / ".hydra" / "config.yaml")
    code, _, err = _replay(f"run={tmp_path}", "image=chelsea")
    assert code == 2
    assert "white-box" in err and "nothing to replay" in err
    assert str(tmp_path / "adversarial" / "chelsea.png") in err


def test_replay_of_a_compare_folder_of_white_box_methods_names_their_pngs(tmp_path: Path) -> None:
    _compare(tmp_path, "methods=[iterative_fgm]", "eps_list=[20]")
    code, _, err = _replay(f"run={tmp_path}", "image=chelsea")
    assert code == 2 and "nothing to replay" in err
    assert str(tmp_path / "adversarial" / "iterative_fgm" / "eps20" / "chelsea.png") in err
