"""White-box attack time per image, as a multiple of one forward+backward pass of the target.

    python -m benchmarks.whitebox_cost --targets classic twitter --eps 20 --repeats 3

Each white-box method in ``conf/attack/`` is built exactly as ``python -m blackbox attack=NAME``
builds it and run on the bundled photo (p50 of ``--repeats`` runs after a warm-up); the unit is the
p50 of one forward+backward of the same image through ``log_density``. Iterative FGM's 3 steps plus
Grad-CAM should cost a handful of passes; PGD's 40 steps about 40. Prints a table and writes JSON
under ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._compose import compose_run
from blackbox.core.images import load_bundled
from blackbox.experiment.pipeline import Pipeline
from blackbox.settings.build import attack_spec, goal_rule
from targets import (
    Capability,
    MissingCapabilityError,
    load,
    require,
)
from targets._zoo import group_names

PHOTO = "chelsea"


def p50_seconds(call, repeats: int) -> float:
    call()  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def measure(name: str, attacks: list[str], eps: float, repeats: int) -> list[dict]:
    """One row per attack on the target ``name``."""
    image = load_bundled(PHOTO)
    target = load(name)
    try:
        require(
            target,
            {Capability.GRADIENTS},
            by="a white-box attack",
            name=name,
            advice="leave it out of --targets",
        )
    except MissingCapabilityError as error:
        raise SystemExit(str(error)) from None
    pixels = torch.from_numpy(image.as_float).permute(2, 0, 1)[None].contiguous()

    def forward_backward() -> None:
        x = pixels.clone().requires_grad_()
        target.log_density(x).logsumexp(dim=(1, 2)).sum().backward()

    unit = p50_seconds(forward_backward, repeats)
    rows = []
    for attack_name in attacks:
        cfg = compose_run([f"target={name}", f"attack={attack_name}", f"eps={eps}", "storage=memory"])
        attack = attack_spec(cfg).build()
        pipeline = Pipeline(target=target, target_name=name, goal_rule=goal_rule(cfg))
        clean = pipeline.clean(image)
        problem = pipeline.problem(clean, pipeline.goal(clean), eps=eps)
        seconds = p50_seconds(lambda attack=attack, problem=problem: attack.run(problem, target), repeats)
        rows.append(
            {
                "target": name,
                "attack": attack_name,
                "eps": eps,
                "seconds": seconds,
                "forward_backward_seconds": unit,
                "multiple": seconds / unit,
            }
        )
        print(f"| {name} | {attack_name} | {seconds:.2f} | {unit:.3f} | {seconds / unit:.1f} |", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", nargs="+", default=["classic", "twitter"])
    parser.add_argument("--attacks", nargs="+", default=[a for a in group_names("attack") if a != "blackbox"])
    parser.add_argument("--eps", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    print("| target | attack | seconds / image | forward+backward s | multiple |")
    print("|---|---|---|---|---|")
    rows = [row for name in args.targets for row in measure(name, args.attacks, args.eps, args.repeats)]
    out = args.out / f"whitebox_cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
