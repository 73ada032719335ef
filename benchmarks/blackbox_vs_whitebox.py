"""Issue 18's figures: black-box strategies beside PGD and iterative FGM, measured in the same run.

    python -m benchmarks.photos runs/benchmarks/photos
    python -m benchmarks.heldout_photos runs/benchmarks/heldout
    python -m benchmarks.blackbox_vs_whitebox --target twitter --budget 200

For one target, on every picture set (``--sets NAME=OVERRIDES``: the 13 pictures of the README's
search-design table as ``readme`` = bundled + :mod:`benchmarks.photos`, and the held-out
:mod:`benchmarks.heldout_photos`), every picture is queried once clean, given the paper's goal (or
skipped, as the pipeline does), then attacked by each white-box reference (``--whitebox``) and each
black-box strategy (``--strategy NAME=OVERRIDES``, Hydra overrides of ``python -m blackbox``; by
default every strategy of the README's table, from ``texture_blobs`` to the issue's ``tpe`` and
``random``; ``sparse_rs`` ran too until it left ``conf/``) at each eps (default 5, 10, 20). It
prints, per set and eps, the share of counted pictures that succeeded within 20 / 50 / 100 / 200
queries, and the median over pictures of the smallest successful L2 divided by PGD's (PGD's
smallest: a bisection on eps below its smallest successful sweep size, ``--bisect`` steps; a
black-box strategy's: the smallest successful L2 it reached within the budget, over the eps), then
each of the issue's goals as met / not met with its figures. Writes JSON and one success-against-queries
plot per set (PNG) under ``runs/benchmarks/``. ``--summarise`` merges the rows of several runs (one
row per method, picture and eps: seeded methods run twice count once).

Every strategy sees only the target's outputs; the white-box rows use its gradients (one query).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import time
from pathlib import Path

import optuna
from omegaconf import OmegaConf

from benchmarks._blackbox_report import as_number, summarise
from benchmarks._compose import compose_run
from blackbox.attacks import AttackFailedError, AttackProblem
from blackbox.core.datasets import iterate, sources_from_config
from blackbox.core.images import ImageLoadError
from blackbox.experiment.record import measurement
from blackbox.settings.build import attack_spec, goal_rule
from targets._zoo import instantiate_target
from targets.http import HttpTarget

DEFAULT_SETS = (
    "readme=dataset=bundled",
    "readme=dataset=folder,dataset.path=runs/benchmarks/photos",
    "heldout=dataset=folder,dataset.path=runs/benchmarks/heldout",
)
# The search after its first success: bisection, then rounds at smaller eps (blackbox/search/_shrink.py).
SHRINK = "shrink.enabled=true,shrink.rounds=30"
DEFAULT_STRATEGIES = (
    f"texture_blobs=search=texture_blobs,sampler=tpe,{SHRINK}",
    f"texture=search=texture,sampler=tpe,{SHRINK}",
    f"texture_random=search=texture,sampler=random,{SHRINK}",
    f"blobs=sampler=tpe,{SHRINK}",
    "accumulate=attack=accumulate",
    # The table: the paper's TPE search over blobs and its baselines, as python -m blackbox.compare
    # runs them (the first success ends the search).
    "tpe=sampler=tpe",
    "random=sampler=random",
    # sparse_rs (sampler=sparse_rs) ran here too; it won on no set and left conf/ (docs/benchmarks.md)
)


def parse(text: str, what: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    if not name or not overrides:
        raise SystemExit(f"--{what} takes NAME=OVERRIDE[,OVERRIDE...], got {text!r}")
    return name, [o for o in re.split(r",(?![^\[]*\])", overrides) if o]  # commas in [a,b] stay


def problems(target, target_name: str, overrides: list[str], common: list[str]) -> list[tuple]:
    """(image, clean output, goal) of every picture the pipeline would attack."""
    cfg = compose_run([*common, *overrides])
    out = []
    dataset = OmegaConf.to_container(cfg.dataset)
    for source, loaded in iterate(sources_from_config(image=None, dataset=dataset), cfg.working_width):  # type: ignore[arg-type]
        if isinstance(loaded, ImageLoadError):
            print(f"  skipped {source.image_id}: {loaded}")
            continue
        clean = target.query([loaded.as_float])[0]
        try:
            goal = goal_rule(cfg).goal_for(loaded, clean)
        except ValueError as error:
            print(f"  skipped {loaded.image_id}: {str(error)[:90]}")
            continue
        out.append((loaded, clean, goal))
    return out


LOG: Path | None = None  # every attack's row is appended here as it ends (partial runs can be read)


def attack_once(
    target, target_name: str, overrides: list[str], item: tuple, eps: float, name: str | None = None
) -> dict:
    row = _attack_once(target, target_name, overrides, item, eps)
    label = name or next(
        (
            o.split("=", 1)[1]
            for o in reversed(overrides)
            if o.startswith(("attack.label=", "attack=", "sampler="))
        ),
        "?",
    )
    if name is not None:
        row["strategy"] = name
    print(
        f"    {row['image']:>28} {label:>14} eps {eps:<6g} success {row['success']!s:5} "
        f"to success {row['queries_to_success']!s:>4}  L2 {as_number(row['l2']):6.2f}  "
        f"{row['seconds']:5.1f} s",
        flush=True,
    )
    if LOG is not None:
        with LOG.open("a") as log:
            log.write(json.dumps({**row, "overrides": overrides}) + "\n")
    return row


def _attack_once(target, target_name: str, overrides: list[str], item: tuple, eps: float) -> dict:
    loaded, clean, goal = item
    cfg = compose_run([*overrides, f"eps={eps}"])
    attack = attack_spec(cfg).build(storage=None)
    problem = AttackProblem(loaded, clean, goal, float(eps), str(cfg.norm), target_name, str(cfg.success))
    has_point = target.gives_point
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = attack.run(problem, target)
    except AttackFailedError as error:
        return {
            "image": loaded.image_id,
            "eps": eps,
            "success": False,
            "queries_to_success": None,
            "l2": None,
            "queries": 0,
            "failed": str(error),
            "seconds": time.perf_counter() - started,
        }
    record = measurement(result, loaded, clean, has_point=has_point)
    return {
        "image": loaded.image_id,
        "eps": eps,
        "success": bool(record["success"]),
        "queries_to_success": record["queries_to_success"],
        "l2": record["l2"] if record["success"] else None,
        "first_success_l2": record.get("first_success_l2"),
        "queries": record["queries"],
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="twitter")
    parser.add_argument("--eps", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument(
        "--sets", nargs="+", default=list(DEFAULT_SETS), help="NAME=OVERRIDES; a name given twice adds up"
    )
    parser.add_argument("--strategy", action="append", default=[], help="NAME=OVERRIDE[,OVERRIDE...]")
    parser.add_argument("--whitebox", nargs="*", default=["pgd", "iterative_fgm"])
    parser.add_argument(
        "--bisect", type=int, default=3, help="PGD's bisection steps on eps below its smallest success"
    )
    parser.add_argument(
        "--first-success-eps",
        type=float,
        nargs="*",
        default=[],
        help="at these eps, attack=accumulate strategies stop at the first success (attack.shrink=false): "
        "their success figures are the same, and the smallest-L2 figure comes from the other eps",
    )
    parser.add_argument(
        "--crops-url",
        default=None,
        help="a crop-only reference server (python -m targets.serve target=T response=crop): the "
        "--crops-strategies are run again through it (target.expect=[crops]) at --crops-eps",
    )
    parser.add_argument(
        "--crops-strategies", nargs="*", default=None, help="strategy names (default: the first one)"
    )
    parser.add_argument("--crops-eps", type=float, nargs="*", default=[10.0])
    parser.add_argument(
        "--whitebox-only",
        action="store_true",
        help="no black-box strategy (e.g. PGD at more eps, to --summarise)",
    )
    parser.add_argument("--max-pictures", type=int, default=None, help="count at most this many per set")
    parser.add_argument(
        "--summarise",
        nargs="*",
        default=[],
        metavar="SET=DIR",
        help="rebuild tables, goals, JSON and plots from the rows.jsonl of earlier (even unfinished) runs",
    )
    parser.add_argument("--extra", nargs="*", default=[], help="Hydra overrides for every attack")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    chosen = [] if args.whitebox_only else (args.strategy or DEFAULT_STRATEGIES)
    strategies = [parse(s, "strategy") for s in chosen]
    sets: dict[str, list[list[str]]] = {}
    for text in args.sets:
        name, overrides = parse(text, "sets")
        sets.setdefault(name, []).append(overrides)
    common = [
        f"target={args.target}",
        "storage=memory",
        "artifacts=none",
        "progress=false",
        f"budget={args.budget}",
        *args.extra,
    ]
    out_dir = args.out / f"blackbox_vs_whitebox-{args.target}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    global LOG
    LOG = out_dir / "rows.jsonl"
    if args.summarise:
        summarise_logs(args, out_dir)
        return
    target = instantiate_target(compose_run(common).target)
    report: dict = {
        "target": args.target,
        "budget": args.budget,
        "eps": args.eps,
        "sets": {},
        "command": vars(args) | {"out": str(args.out)},
    }
    for set_name, parts in sets.items():
        items = [item for overrides in parts for item in problems(target, args.target, overrides, common)]
        items = items[: args.max_pictures]  # the first ones in the sets' sorted order: not chosen by outcome
        print(
            f"\n== {args.target}, {set_name}: {len(items)} pictures counted: "
            + ", ".join(i[0].image_id for i in items),
            flush=True,
        )
        rows: dict[str, list[dict]] = {}
        crops_target = (
            HttpTarget(url=args.crops_url, expect=["crops"], aspect_ratios=target.aspect_ratios)
            if args.crops_url
            else None
        )
        # Picture by picture, every method: a run cut short leaves whole pictures (see --summarise).
        for item in items:
            for method in args.whitebox:
                for eps in args.eps:
                    rows.setdefault(method, []).append(
                        attack_once(target, args.target, [*common, f"attack={method}"], item, eps)
                    )
                if method == "pgd" and args.bisect > 0:
                    rows[method] += bisect_pgd(target, args.target, common, item, rows[method], args.bisect)
            if crops_target is not None:
                loaded, _, goal = item
                clean = crops_target.query([loaded.as_float])[0]
                chosen_crops = args.crops_strategies or [strategies[0][0]]
                for name, overrides in strategies:
                    if name not in chosen_crops:
                        continue
                    # The map's goal, and the strategy's rule (default: the point, estimated from
                    # the crops); an accumulation accepts ties (crop-only scores are flat between
                    # crop jumps).
                    ties = ["attack.accept_ties=true"] if "attack=accumulate" in overrides else []
                    rule = [] if any(o.startswith("success=") for o in overrides) else ["success=point"]
                    settings = [*common, *overrides, *rule, *ties]
                    for eps in args.crops_eps:
                        row = attack_once(
                            crops_target, "http", settings, (loaded, clean, goal), eps, f"{name}@crops"
                        )
                        rows.setdefault(f"{name}@crops", []).append(row)
            for name, overrides in strategies:
                for eps in args.eps:
                    first_only = eps in args.first_success_eps and "attack=accumulate" in overrides
                    settings = [*common, *overrides, *(["attack.shrink=false"] if first_only else [])]
                    rows.setdefault(name, []).append(
                        attack_once(target, args.target, settings, item, eps, name)
                    )
        report["sets"][set_name] = summarise(set_name, [i[0].image_id for i in items], rows, args, out_dir)
        (out_dir / "blackbox_vs_whitebox.json").write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwritten {out_dir}")


def method_of(overrides: list[str]) -> str:
    """The method a logged row's overrides ran: the label, the white-box attack, or the sampler
    (``+shrink`` with ``shrink.enabled=true``)."""
    shrunk = "+shrink" if "shrink.enabled=true" in overrides else ""
    for prefix in ("attack.label=", "attack=", "sampler="):
        found = [o.split("=", 1)[1] for o in overrides if o.startswith(prefix)]
        if found:
            return found[-1] + shrunk
    return "?"


def summarise_logs(args, out_dir: Path) -> None:
    """The report of earlier runs from their ``rows.jsonl``: only the pictures every method finished.

    A set named twice (``readme=DIR1 readme=DIR2``) takes the rows of both folders, e.g. PGD at
    more eps from a ``--whitebox-only`` run.
    """
    report: dict = {
        "target": args.target,
        "budget": args.budget,
        "eps": args.eps,
        "sets": {},
        "from": args.summarise,
    }
    merged: dict[str, dict[str, dict[tuple, dict]]] = {}
    for text in args.summarise:
        set_name, _, folder = text.partition("=")
        keyed = merged.setdefault(set_name, {})
        for line in (Path(folder) / "rows.jsonl").read_text().splitlines():
            row = json.loads(line)
            overrides = row.pop("overrides")
            name = row.get("strategy") or method_of(overrides)
            row["bisection"] = row.get("bisection") or (name == "pgd" and row["eps"] not in args.eps)
            if "strategy" not in row and name.endswith("accumulate") and "accept_ties" in line:
                name += "@crops"
            # A method run again on a picture (e.g. the white-box references in every run's folder)
            # counts once: the last row read. The attacks are seeded, so the rows should agree.
            key = (row["image"], row["eps"], row["bisection"])
            earlier = keyed.setdefault(name, {}).get(key)
            if earlier is not None and (earlier["success"], earlier["queries_to_success"]) != (
                row["success"],
                row["queries_to_success"],
            ):
                print(
                    f"  note: {name} on {row['image']} at eps {row['eps']:g} differs between runs; last kept"
                )
            keyed[name][key] = row
    for set_name, keyed in merged.items():
        rows = {name: list(by_key.values()) for name, by_key in keyed.items()}
        # A picture counts when every method finished it at every eps that method was run at (crop-only
        # rows, run at fewer eps, do not decide); a method not run at some eps shows no figures there.
        done = []
        for name, method_rows in rows.items():
            if name.endswith("@crops"):
                continue
            sweep = [r for r in method_rows if not r["bisection"]]
            ran = {r["eps"] for r in sweep} & set(args.eps)
            pairs = {(r["image"], r["eps"]) for r in sweep}
            done.append({i for i, _ in pairs if all((i, e) in pairs for e in ran)})
        images = sorted(set.intersection(*done)) if done else []
        rows = {name: [r for r in method_rows if r["image"] in images] for name, method_rows in rows.items()}
        print(
            f"\n== {args.target}, {set_name}: {len(images)} pictures finished by every method: "
            + ", ".join(images)
        )
        report["sets"][set_name] = summarise(set_name, images, rows, args, out_dir)
    (out_dir / "blackbox_vs_whitebox.json").write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwritten {out_dir}")


def bisect_pgd(
    target, target_name: str, common: list[str], item: tuple, done: list[dict], steps: int
) -> list[dict]:
    """PGD below its smallest successful sweep eps: ``steps`` bisection attacks, marked ``bisection``."""
    image = item[0].image_id
    successes = sorted(r["eps"] for r in done if r["image"] == image and r["success"])
    if not successes:
        return []
    low = max(
        (r["eps"] for r in done if r["image"] == image and not r["success"] and r["eps"] < successes[0]),
        default=0.0,
    )
    high, out = successes[0], []
    for _ in range(steps):
        middle = round((low + high) / 2, 4)
        row = attack_once(target, target_name, [*common, "attack=pgd"], item, middle) | {"bisection": True}
        out.append(row)
        low, high = (low, middle) if row["success"] else (middle, high)
    return out


if __name__ == "__main__":
    main()
