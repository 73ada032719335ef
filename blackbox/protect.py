"""``python -m blackbox.protect image=photo.jpg box=[x0,y0,x1,y1]``: keep a region in every crop.

One perturbation of the image that every cropper (default: every offline zoo cropper) keeps the box
in, for every aspect ratio, after the platform's resize and JPEG re-encoding; written at the
image's own size and format with ``report.md`` and ``thumbnails.png`` (conf/protect.yaml, the code:
:mod:`blackbox.protection`). From Python, this module is callable: ``blackbox.protect("photo.jpg",
box=[...])`` is :func:`blackbox.protection.protect`.

Exit codes: 0 the file and report are written (the report says whether every crop keeps the box);
2 a setting, the image, the box or a cropper is unusable; 4 nothing to protect (every crop already
keeps the box). On 2 and 4 nothing is written.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from blackbox.experiment.run import EXIT_BAD_CONFIG, EXIT_NOTHING_DONE
from blackbox.experiment.run_folder import discard_if_unused
from blackbox.protection._protect import NothingToProtectError, ProtectResult
from blackbox.protection._protect import protect as protect
from blackbox.protection.transforms import TransformRange
from blackbox.settings.hydra_run import run_dir
from targets import ConfigError, UserError


def run(cfg: DictConfig, folder: Path) -> ProtectResult:
    """The command's work: ``cfg`` (conf/protect.yaml) to :func:`protect`, writing in ``folder``."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(settings, dict)
    if not settings["image"]:
        raise ConfigError(
            "give the image to protect: python -m blackbox.protect image=photo.jpg box=[x0,y0,x1,y1]"
        )
    transforms = settings["transforms"]
    return protect(
        settings["image"],
        box=settings["box"],
        point=settings["point"],
        croppers=settings["croppers"],
        cropper_settings=settings["cropper_settings"],
        aspect_ratios=settings["aspect_ratios"],
        transforms=TransformRange(
            qualities=_range(transforms["jpeg_quality"]),
            long_sides=_range(transforms["long_side"]),
            samples=transforms["search_samples"],
        ),
        budget=settings["budget"],
        eps=settings["eps"],
        eps_inf=settings["eps_inf"],
        ensemble=settings["ensemble"],
        sampler=settings["sampler"],
        proposal=settings["proposal"],
        step=settings["step"],
        shrink_steps=settings["shrink_steps"],
        working_width=settings["working_width"],
        jpeg_quality=settings["jpeg_quality"],
        seed=settings["seed"],
        out_dir=settings["out"] or folder,
    )


def _range(value: object) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


@hydra.main(version_base="1.3", config_path="../conf", config_name="protect")
def main(cfg: DictConfig) -> None:
    folder = run_dir()
    try:
        result = run(cfg, folder)
    except UserError as error:
        print(
            f"{'nothing to do' if isinstance(error, NothingToProtectError) else 'error'}: {error}",
            file=sys.stderr,
        )
        discard_if_unused(folder)  # nothing written: leave no empty run folder behind
        sys.exit(EXIT_NOTHING_DONE if isinstance(error, NothingToProtectError) else EXIT_BAD_CONFIG)
    written = result.norms["written"]
    print(f"{result.image}  ({result.written.format}, {result.image.stat().st_size:,} bytes)")
    print(f"{result.report}\n{result.picture}")
    if result.skipped:
        for name, why in result.skipped.items():
            print(f"note: {name} {why}")
    verdict = (
        "kept in every crop of every cropper after every treatment"
        if result.kept
        else ("NOT kept in every crop: see the report's table")
    )
    print(
        f"the box is {verdict}; {sum(result.queries.values())} search queries; "
        f"L-inf {written['linf_levels']:g} levels, SSIM {written['ssim']:.4f}, PSNR {written['psnr']:.1f} dB"
    )


class _CallableModule(types.ModuleType):
    """``blackbox.protect(...)`` once this module is imported: the module is the function too."""

    def __call__(self, *args, **kwargs) -> ProtectResult:
        return protect(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
