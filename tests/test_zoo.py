"""The zoo by name (``targets.load``, ``targets.names``), and ``targets/`` standing on its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import targets
from targets import DEFAULT_ASPECT_RATIOS, ConfigError, UnknownChoiceError, UserError
from targets.classic import ClassicSaliency
from targets.vips import VipsSmartcrop
from tests.conftest import REPO


def test_names_are_the_zoo_config_files() -> None:
    names = targets.names()
    assert names == sorted(p.stem for p in (REPO / "conf" / "target").glob("*.yaml"))
    assert {"classic", "twitter", "http", "vips_entropy"} <= set(names)


def test_load_a_known_name_with_its_config_file_settings() -> None:
    target = targets.load("classic")
    assert isinstance(target, ClassicSaliency)
    assert target.aspect_ratios == DEFAULT_ASPECT_RATIOS
    assert target.grid_width == 128  # conf/target/classic.yaml: scales: [64, 128]


def test_load_with_overrides() -> None:
    target = targets.load("classic", scales=[32], aspect_ratios=(1.0, 2.0))
    assert isinstance(target, ClassicSaliency)
    assert target.grid_width == 32 and target.aspect_ratios == (1.0, 2.0)
    vips = targets.load("vips_entropy", interesting="attention")  # a file's setting replaced
    assert isinstance(vips, VipsSmartcrop) and vips.name == "vips_attention"


def test_an_unknown_name_lists_the_zoo() -> None:
    with pytest.raises(UnknownChoiceError) as caught:
        targets.load("nosuch")
    message = str(caught.value)
    assert message.startswith("unknown target 'nosuch'; the choices are: ")
    assert all(name in message for name in targets.names())
    assert isinstance(caught.value, UserError)
    with pytest.raises(UnknownChoiceError):  # a name is a name, not a path into conf/
        targets.load("../attack/pgd")


def test_a_bad_or_unknown_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"target settings: .*nosuch"):
        targets.load("classic", nosuch=1)
    with pytest.raises(ConfigError, match="interesting must be one of"):
        targets.load("vips_entropy", interesting="x")


def test_the_zoo_pages_example_runs() -> None:
    page = (REPO / "docs" / "zoo.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "targets.load(" in b]
    assert len(blocks) == 1, "docs/zoo.md has one targets.load example"
    namespace: dict = {}
    exec(compile(blocks[0], "docs/zoo.md", "exec"), namespace)
    output = namespace["output"]
    assert isinstance(namespace["cropper"], ClassicSaliency)
    assert isinstance(output, targets.TargetOutput) and np.isfinite(output.log_density).all()


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_nothing_in_targets_imports_blackbox() -> None:
    files = sorted((REPO / "targets").rglob("*.py"))
    assert len(files) > 20
    offenders = {
        str(path.relative_to(REPO)): name
        for path in files
        for name in _imports(path)
        if name == "blackbox" or name.startswith("blackbox.")
    }
    assert not offenders, f"targets/ must not import blackbox/ (the layer above): {offenders}"


def test_the_import_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from blackbox.core.images import to_rgb\n    import blackbox\n")
    assert _imports(module) == ["blackbox.core.images", "blackbox"]
