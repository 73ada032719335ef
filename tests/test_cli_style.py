"""One command-line style: every ``python -m blackbox...`` command takes ``key=value`` settings.

The Hydra apps (``blackbox``, ``compare``, ``robustness``, ``distill``, ``targets.serve``) by nature;
replay, dashboard, maps and the two reports through :mod:`blackbox.settings.arguments`, which reads
values with Hydra's own override parser.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import blackbox.maps
import blackbox.report
import blackbox.robustness_report
from blackbox.settings import dashboard, replay
from blackbox.settings.arguments import Setting, parse_settings

COMMANDS = {
    "replay": replay.main,
    "dashboard": dashboard.main,
    "maps": blackbox.maps.main,
    "report": blackbox.report.main,
    "robustness_report": blackbox.robustness_report.main,
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_option_flag_is_refused_with_the_key_value_to_write(command, capsys) -> None:
    old = {"replay": "--image", "dashboard": "--port", "maps": "--target", "report": "--merge"}
    flag = old.get(command, "--run")
    assert COMMANDS[command]([flag, "x"]) == 2
    err = capsys.readouterr().err
    assert "takes key=value settings, as every blackbox command does" in err
    assert f"(write {flag.lstrip('-')}=...)" in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_the_settings(command, capsys) -> None:
    assert COMMANDS[command](["--help"]) == 0
    out = capsys.readouterr().out
    assert "settings (key=value, Hydra's syntax):" in out and "=..." in out


def test_values_are_read_as_hydra_reads_them(tmp_path) -> None:
    settings = (
        Setting("run", "a folder", str, required=True),
        Setting("merge", "folders", list),
        Setting("trial", "a number", int),
        Setting("image", "an id", str),
        Setting("target", "a name", str, default="classic", prefix=True),
    )
    values = parse_settings(
        ["run=~/x", "merge=[a,b]", "trial=7", "image=0001", 'target.url="http://h/c?a=b"', "target.s=[6]"],
        settings,
        prog="p",
    )
    assert values["run"].endswith("/x") and not values["run"].startswith("~")
    assert values["merge"] == ["a", "b"] and values["trial"] == 7 and values["image"] == "0001"
    assert values["target"] == "classic" and values["target.*"] == {"url": "http://h/c?a=b", "s": [6]}
    for argv, message in (
        (["merge=[a]"], "give run=..."),
        (["run=x", "nope=1"], "unknown setting 'nope'"),
        (["run=x", "trial.x=1"], "unknown setting 'trial.x'"),
        (["run=x", "trial=seven"], "trial='seven' is not valid"),
        (["run=x", "image=a=b"], "quote a value holding ="),
        (["runs/x"], "got 'runs/x'"),
    ):
        with pytest.raises(blackbox.ConfigError, match=message):
            parse_settings(argv, settings, prog="p")


def test_distillation_without_its_extra_says_what_to_install(monkeypatch) -> None:
    from blackbox.core.extras import import_pysaliency

    monkeypatch.setitem(sys.modules, "pysaliency", None)  # as in the core install, which leaves it out
    with pytest.raises(blackbox.MissingExtraError, match=r"pip install -e '\.\[distill\]'"):
        import_pysaliency("python -m blackbox.distill")
    from hydra import compose, initialize_config_dir

    from blackbox.training.distill import distill
    from targets._zoo import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="distill")
    with pytest.raises(blackbox.MissingExtraError, match=r"python -m blackbox\.distill needs pysaliency"):
        distill(cfg, Path("unused"))
