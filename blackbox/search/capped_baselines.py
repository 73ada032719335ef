"""The field's dense black-box attacks under an L-inf cap, as named baselines of ``attack=square``.

Each searches the perturbation in whole 8-bit levels within the cap (``eps_inf``, or ``eps`` under
``norm="linf"``), queries the target only for its outputs, scores each answer with the project's
objective (:func:`blackbox.core.objective.score`, through the patch search's ``judge_for``), and keeps
the best image; every target call is one query of the budget. They are written from their papers, at
the size the cap asks:

* :class:`SquareAttack` (Andriushchenko et al., ECCV 2020, L-inf): vertical stripes of +-cap to start,
  then one random square per query, overwritten with a random colour at +-cap, kept if the score
  rose; the square's area is the fraction ``p`` of the image, halved on the paper's schedule
  (rescaled from its 10,000 queries to the budget).
* :class:`Parsimonious` (Moon et al., ICML 2019): the perturbation is at a vertex of the cap's box,
  -cap everywhere to start; local search flips one channel of one block at a time (in random order),
  keeping flips that raise the score; after a pass, blocks are halved.
* :class:`SimBADCT` (Guo et al., ICML 2019, the DCT basis): add or subtract one low-frequency 2-D DCT
  basis function (``order x order`` lowest frequencies, grey) at the cap's amplitude, kept if better.
* :class:`BanditsTD` (Ilyas et al., ICLR 2019): a tiled gradient prior (``tile`` px, per channel)
  updated from two-point finite differences of the score, and a signed step of ``cap / 2`` along it.

Measured on the search-design table (docs/invisible.md): none reaches ``attack=square``.
"""

from __future__ import annotations

import abc
import zlib

import numpy as np

from blackbox.attacks._base import Attack, AttackProblem, AttackResult
from blackbox.search._session import judge_for
from blackbox.search.budget import QueryBudget
from targets import Target, TargetOutput, require

# Square Attack's schedule (the paper's code, for 10,000 queries): p halves after each of these.
SQUARE_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


class CappedLocalSearch(Attack):
    """A search over ``(H, W, 3)`` int16 perturbations in levels within ``[-cap, cap]``.

    Subclasses write :meth:`search`, calling :meth:`ask` for every candidate and returning when it
    answers ``None``: the budget is spent, or (``early_stop``) a candidate succeeded.

    Raises:
        ValueError: ``budget`` is not positive.
        UnusableBudgetError (from :meth:`run`): no L-inf cap, or one below one 8-bit level.
    """

    def __init__(self, *, budget: int, early_stop: bool = True, seed: int = 0, label: str = "") -> None:
        if int(budget) <= 0:
            raise ValueError(f"budget must be a positive number of queries, got {budget}")
        self.budget, self.early_stop, self.seed = int(budget), bool(early_stop), int(seed)
        self.name = label or self.name

    @abc.abstractmethod
    def search(self, height: int, width: int, cap: int, rng: np.random.Generator) -> None:
        """Propose candidates through :meth:`ask`; return when it answers ``None``."""

    def ask(self, delta: np.ndarray) -> float | None:
        """Query ``clean + delta`` (``delta`` in levels), quantised within the budget; return its score,
        or ``None`` when the search must stop (the budget is spent, or the goal reached with ``early_stop``).

        The budget's :meth:`~blackbox.core.perturbation.PerturbationBudget.apply` keeps the L2 ``eps`` too:
        a perturbation over it is scaled down, as every attack's image is.
        """
        adversarial = self._problem.budget.apply(self._problem.image.pixels, delta / 255.0)
        output = self._queries.query([adversarial.astype(np.float32) / 255.0])[0]
        value, hit = self._judge(output)
        if (hit, value) > (self._best_hit, self._best_value) or self._best is None:
            self._best, self._best_value, self._best_hit = (adversarial, output), value, hit
        if hit and self._first_success is None:
            self._first_success = self._queries.used
        if (hit and self.early_stop) or self._queries.remaining == 0:
            return None
        return value

    def run(self, problem: AttackProblem, target: Target) -> AttackResult:
        require(target, self.requires, by=self.name, name=problem.target_name)
        cap = problem.budget.require_cap(by=f"attack={self.name}")
        image = problem.image
        self._problem, self._rule = problem, self.success_rule(problem, target)
        self._judge = judge_for(problem, has_point=target.gives_point, rule=self._rule)
        self._queries = QueryBudget(target, limit=self.budget)
        self._best: tuple[np.ndarray, TargetOutput] | None = None
        self._best_value, self._best_hit, self._first_success = -np.inf, False, None
        self.clean_value = self._judge(problem.clean_output)[0]
        key = f"{image.image_id}|{problem.target_name}|{problem.budget}|{self.name}"
        rng = np.random.default_rng((self.seed * 1_000_003 + zlib.crc32(key.encode())) % 2**31)
        self.search(image.height, image.width, cap, rng)
        assert self._best is not None, "the search asked nothing"
        adversarial, output = self._best
        return AttackResult(
            image_id=image.image_id,
            method=self.name,
            success=self._best_hit,
            adversarial=adversarial,
            adversarial_output=output,
            goal=problem.goal,
            eps=problem.eps,
            norm=problem.norm,
            eps_inf=problem.eps_inf,
            queries=self._queries.used,
            queries_to_success=self._first_success,
            score=float(self._best_value),
            success_rule=self._rule,
        )


class SquareAttack(CappedLocalSearch):
    """Square Attack, L-inf (Andriushchenko et al. 2020). ``p_init``: the first square's area fraction."""

    name = "square_attack"

    def __init__(self, *, p_init: float = 0.05, **settings: object) -> None:
        super().__init__(**settings)  # type: ignore[arg-type]
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1] (a fraction of the image's area), got {p_init}")
        self.p_init = float(p_init)

    def search(self, height: int, width: int, cap: int, rng: np.random.Generator) -> None:
        delta = np.repeat(rng.choice(np.array([-cap, cap], dtype=np.int16), size=(1, width, 3)), height, 0)
        best = self.ask(delta)
        for step in range(1, self.budget):
            if best is None:
                return
            done = int(step / self.budget * 10_000)
            p = self.p_init / 2 ** sum(done > threshold for threshold in SQUARE_SCHEDULE)
            side = int(min(max(1, round(np.sqrt(p * height * width))), height, width))
            y0, x0 = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
            candidate = delta.copy()
            candidate[y0 : y0 + side, x0 : x0 + side] = rng.choice(
                np.array([-cap, cap], dtype=np.int16), size=3
            )
            value = self.ask(candidate)
            if value is None:
                return
            if value > best:
                best, delta = value, candidate


class Parsimonious(CappedLocalSearch):
    """The Parsimonious attack's local search over block signs (Moon et al. 2019).

    ``block``: the first block side, px; halved after each pass down to ``min_block``.
    """

    name = "parsimonious"

    def __init__(self, *, block: int = 32, min_block: int = 4, **settings: object) -> None:
        super().__init__(**settings)  # type: ignore[arg-type]
        if not 1 <= int(min_block) <= int(block):
            raise ValueError(f"need 1 <= min_block <= block (pixels), got {min_block} and {block}")
        self.block, self.min_block = int(block), int(min_block)

    def search(self, height: int, width: int, cap: int, rng: np.random.Generator) -> None:
        delta = np.full((height, width, 3), -cap, dtype=np.int16)
        best, block = self.ask(delta), self.block
        while best is not None:
            cells = [
                (y, x, c) for y in range(0, height, block) for x in range(0, width, block) for c in range(3)
            ]
            for index in rng.permutation(len(cells)):
                y, x, c = cells[index]
                candidate = delta.copy()
                candidate[y : y + block, x : x + block, c] *= -1
                value = self.ask(candidate)
                if value is None:
                    return
                if value > best:
                    best, delta = value, candidate
            block = max(self.min_block, block // 2)


class SimBADCT(CappedLocalSearch):
    """SimBA in the DCT basis (Guo et al. 2019); ``order``: the lowest frequencies tried per axis."""

    name = "simba_dct"

    def __init__(self, *, order: int = 16, **settings: object) -> None:
        super().__init__(**settings)  # type: ignore[arg-type]
        if int(order) < 1:
            raise ValueError(f"order must be >= 1 DCT frequencies per axis, got {order}")
        self.order = int(order)

    def search(self, height: int, width: int, cap: int, rng: np.random.Generator) -> None:
        z = np.zeros((height, width, 3))
        best = self.clean_value  # the clean image's score: known, so not asked again
        columns = [np.cos(np.pi * u * (np.arange(width) + 0.5) / width) for u in range(self.order)]
        rows = [np.cos(np.pi * v * (np.arange(height) + 0.5) / height) for v in range(self.order)]
        while True:
            u, v = rng.integers(0, self.order, size=2)
            basis = np.outer(rows[v], columns[u])[..., None]
            for sign in (1, -1):
                candidate = np.clip(z + sign * cap * basis, -cap, cap)
                value = self.ask(np.rint(candidate).astype(np.int16))
                if value is None:
                    return
                if value > best:
                    best, z = value, candidate
                    break


class BanditsTD(CappedLocalSearch):
    """Bandits-TD (Ilyas et al. 2019): a tiled gradient prior from finite differences, signed steps."""

    name = "bandits"

    def __init__(
        self, *, tile: int = 16, exploration: float = 1.0, fd_eta: float = 0.1, **settings: object
    ) -> None:
        super().__init__(**settings)  # type: ignore[arg-type]
        if int(tile) < 1 or not exploration > 0 or not fd_eta > 0:
            raise ValueError(
                f"need tile >= 1, exploration > 0, fd_eta > 0; got {tile}, {exploration}, {fd_eta}"
            )
        self.tile, self.exploration, self.fd_eta = int(tile), float(exploration), float(fd_eta)

    def search(self, height: int, width: int, cap: int, rng: np.random.Generator) -> None:
        tiles = (-(-height // self.tile), -(-width // self.tile), 3)
        prior, x = np.zeros(tiles), np.zeros((height, width, 3))

        def up(a: np.ndarray) -> np.ndarray:
            return np.repeat(np.repeat(a, self.tile, 0), self.tile, 1)[:height, :width]

        def levels(d: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(d), -cap, cap).astype(np.int16)

        while True:  # the clean image's score is known: the first query is already a probe
            u = rng.standard_normal(tiles)
            probes = []
            for sign in (1, -1):
                q = prior + sign * self.exploration * u
                value = self.ask(levels(x + 10 * self.fd_eta * cap * up(q / (np.linalg.norm(q) + 1e-12))))
                if value is None:
                    return
                probes.append(value)
            prior = prior + (probes[0] - probes[1]) / (self.fd_eta * self.exploration) * u
            x = np.clip(x + cap / 2 * np.sign(up(prior)), -cap, cap)
            if self.ask(levels(x)) is None:
                return
