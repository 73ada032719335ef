"""The evidence behind ``target=twitter``'s preprocessing and activation choices (see targets/twitter.py).

    python -m benchmarks.twitter_evidence [--weights PATH]

Scores each variant of the reconstruction by how well its maps pick out hand-marked salient boxes on
real photos (AUC of grid cells inside a box against the rest), and prints the weight statistics the
module docstring cites. Prints tables and writes JSON under ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import time
import types
from pathlib import Path

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F

from targets._functional import log_softmax_2d
from targets.twitter import TwitterSaliency
from targets.vxm import read_vxm

# Hand-marked salient regions, (x0, y0, x1, y1) as fractions of the width and height.
BOXES: dict[str, list[tuple[float, float, float, float]]] = {
    "astronaut": [(0.31, 0.06, 0.56, 0.31), (0.26, 0.66, 0.40, 0.82), (0.68, 0.0, 0.90, 0.55)],
    "chelsea": [(0.28, 0.25, 0.75, 0.55), (0.48, 0.55, 0.62, 0.90)],
    "coffee": [(0.29, 0.05, 0.70, 0.75), (0.55, 0.55, 0.70, 0.80)],
    "rocket": [(0.45, 0.35, 0.55, 1.0), (0.10, 0.85, 0.70, 1.0)],
    "camera": [(0.30, 0.12, 0.65, 0.40)],
}
LONG_SIDES = (256, 320, 384)  # as grid cells x 16: 16, 20, 24


def photo(name: str) -> np.ndarray:
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image.astype(np.float32) / 255.0


def box_auc(grid: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """AUC of the cells whose centre lies in ``box`` against all other cells (ties count half)."""
    rows, columns = grid.shape
    ys = (np.arange(rows) + 0.5) / rows
    xs = (np.arange(columns) + 0.5) / columns
    x0, y0, x1, y1 = box
    inside = ((ys[:, None] >= y0) & (ys[:, None] <= y1) & (xs[None] >= x0) & (xs[None] <= x1)).ravel()
    positive, negative = grid.ravel()[inside], grid.ravel()[~inside]
    greater = (positive[:, None] > negative[None]).mean()
    equal = (positive[:, None] == negative[None]).mean()
    return float(greater + 0.5 * equal)


def flip_kernels(target: TwitterSaliency) -> None:
    with torch.no_grad():
        for module in target.net.trunk:
            if isinstance(module, torch.nn.Conv2d):
                module.weight.copy_(module.weight.flip(-1, -2))


def zero_padded_blur(target: TwitterSaliency) -> None:
    net = target.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.readout(self.trunk(x))
        radius = self.blur_kernel_size // 2
        taps = torch.arange(-radius, radius + 1, dtype=logits.dtype)
        kernel = torch.exp(-0.5 * (taps / self.blur_sigma) ** 2)
        kernel = kernel / kernel.sum()
        logits = F.conv2d(F.pad(logits, (radius, radius, 0, 0)), kernel.view(1, 1, 1, -1))
        logits = F.conv2d(F.pad(logits, (0, 0, radius, radius)), kernel.view(1, 1, -1, 1))
        return log_softmax_2d(logits[:, 0])

    net.forward = types.MethodType(forward, net)


VARIANTS: dict[str, tuple[dict, object]] = {
    "chosen (0-255, mean, RGB, PReLU, max)": ({}, None),
    "BGR": ({"channel_order": "bgr"}, None),
    "0-255, no mean, RGB": ({"mean": [0, 0, 0]}, None),
    "0-255, no mean, BGR": ({"mean": [0, 0, 0], "channel_order": "bgr"}, None),
    "[0, 1], no mean": ({"value_scale": 1.0, "mean": [0, 0, 0]}, None),
    "[0, 1], ImageNet mean": ({"value_scale": 1.0, "mean": [0.485, 0.456, 0.406]}, None),
    "ELU alpha": ({"alpha_activation": "elu"}, None),
    "average pooling": ({"pool": "avg"}, None),
    "flipped kernels": ({}, flip_kernels),
    "zero-padded blur": ({}, zero_padded_blur),
}


def grids(target: TwitterSaliency, image: np.ndarray, cells: int) -> np.ndarray:
    target.grid_input.grid_cells = cells
    with torch.inference_mode():
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        return target.grid_log_density(tensor)[0].double().numpy()


def score(target: TwitterSaliency) -> dict:
    aucs, ranges, argmax_in_box = [], [], []
    for name, boxes in BOXES.items():
        image = photo(name)
        for flipped in (False, True):
            for long_side in LONG_SIDES:
                grid = grids(target, image[:, ::-1] if flipped else image, long_side // 16)
                for x0, y0, x1, y1 in boxes:
                    box = (1 - x1, y0, 1 - x0, y1) if flipped else (x0, y0, x1, y1)
                    aucs.append(box_auc(grid, box))
        grid = grids(target, image, 20)
        ranges.append(float(grid.max() - grid.min()))
        row, column = np.unravel_index(int(grid.argmax()), grid.shape)
        centre = ((column + 0.5) / grid.shape[1], (row + 0.5) / grid.shape[0])
        argmax_in_box.append(any(b[0] <= centre[0] <= b[2] and b[1] <= centre[1] <= b[3] for b in boxes))
    target.grid_input.grid_cells = 20
    return {"aucs": aucs, "range_nats": ranges, "argmax_in_a_box": argmax_in_box}


def weight_statistics(path: Path) -> dict:
    model = read_vxm(path)

    def tap_correlations(kernels: np.ndarray) -> tuple[float, float]:
        k = kernels.reshape(-1, 3, 3)
        k = k - k.mean(axis=(1, 2), keepdims=True)
        adjacent = [np.corrcoef(k[:, i, j], k[:, i, j + 1])[0, 1] for i in range(3) for j in range(2)]
        adjacent += [np.corrcoef(k[:, i, j], k[:, i + 1, j])[0, 1] for i in range(2) for j in range(3)]
        corners = [np.corrcoef(k[:, 0, 0], k[:, 2, 2])[0, 1], np.corrcoef(k[:, 0, 2], k[:, 2, 0])[0, 1]]
        return float(np.mean(adjacent)), float(np.mean(corners))

    layout = {}
    for conv in model.convs:
        if conv.kernel_size != 3:
            continue
        out, inp = conv.weight.shape[:2]
        flat = conv.weight.reshape(-1)
        layout[conv.index] = {
            "oihw": tap_correlations(flat.reshape(out, inp, 3, 3)),
            "hwio": tap_correlations(flat.reshape(3, 3, inp, out).transpose(3, 2, 0, 1)),
        }
    first = model.convs[0]
    taps = first.weight.transpose(0, 2, 3, 1).reshape(-1, 3)
    values, vectors = np.linalg.eigh(np.cov(taps.T))
    axis = vectors[:, int(np.argmax(values))]
    axis = axis / np.abs(axis).max() * np.sign(axis[np.argmax(np.abs(axis))])
    return {
        "layout_adjacent_vs_corner_correlation": layout,
        "first_layer_weight_std": float(first.weight.std()),
        "first_layer_bias_abs_mean": float(np.abs(first.bias).mean()),
        "first_layer_dominant_colour_axis_stored_channels": [round(float(a), 3) for a in axis],
        "alphas": [c.alpha for c in model.convs if c.alpha is not None],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="fastgaze.vxm (default: the usual resolution)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    results = {}
    chosen = None
    print(f"{'variant':40s} {'AUC':>6s} {'argmax in box':>14s} {'map range (nats)':>17s}")
    for label, (settings, patch) in VARIANTS.items():
        target = TwitterSaliency(weights=args.weights, **settings)
        if patch is not None:
            patch(target)  # type: ignore[operator]
        measured = score(target)
        results[label] = measured
        chosen = chosen or measured
        print(
            f"{label:40s} {np.mean(measured['aucs']):6.3f} "
            f"{sum(measured['argmax_in_a_box'])}/{len(BOXES):<12d} "
            f"{min(measured['range_nats']):6.2f} - {max(measured['range_nats']):5.2f}"
        )
    bgr = np.array(results["BGR"]["aucs"])
    rgb = np.array(chosen["aucs"])  # type: ignore[index]
    print(f"RGB better than BGR in {(rgb > bgr).sum()}/{len(rgb)} paired cases, worse in {(rgb < bgr).sum()}")

    rgb_target, bgr_target = (
        TwitterSaliency(weights=args.weights),
        TwitterSaliency(weights=args.weights, channel_order="bgr"),
    )
    order_cc, same_cell = {}, {}
    for name in BOXES:
        a, b = grids(rgb_target, photo(name), 20), grids(bgr_target, photo(name), 20)
        order_cc[name] = float(np.corrcoef(np.exp(a).ravel(), np.exp(b).ravel())[0, 1])
        same_cell[name] = bool(a.argmax() == b.argmax())
    print(
        "CC of RGB and BGR maps:",
        {k: round(v, 3) for k, v in order_cc.items()},
        "same argmax cell:",
        same_cell,
    )

    stats = weight_statistics(rgb_target.weights_path)
    for index, item in stats["layout_adjacent_vs_corner_correlation"].items():
        oihw, hwio = item["oihw"], item["hwio"]
        print(
            f"layer {index:2d} taps: (out,in,kh,kw) adjacent {oihw[0]:+.2f} corners {oihw[1]:+.2f}; "
            f"(kh,kw,in,out) adjacent {hwio[0]:+.2f} corners {hwio[1]:+.2f}"
        )
    print(
        f"first layer: weight std {stats['first_layer_weight_std']:.3f}, mean |bias| "
        f"{stats['first_layer_bias_abs_mean']:.3f}, dominant colour axis (stored channel order) "
        f"{stats['first_layer_dominant_colour_axis_stored_channels']}; alphas {stats['alphas']}"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"twitter_evidence-{time.strftime('%Y%m%d-%H%M%S')}.json"
    summary = {k: {"auc": float(np.mean(v["aucs"])), **v} for k, v in results.items()}
    payload = {"variants": summary, "rgb_vs_bgr_cc": order_cc, "rgb_vs_bgr_same_cell": same_cell, **stats}
    path.write_text(json.dumps(payload, indent=1, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
