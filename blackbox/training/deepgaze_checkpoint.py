"""The DeepGaze II trainer's checkpoint, ``last.pt``: ``{"format", "state_dict": <readout in
deepgaze_pytorch's layout>, "optimizer", "step", "metadata"}`` (itself loadable by ``target=deepgaze``),
saved beside the plain readout state dict ``deepgaze2_readout.pth``; written atomically, read back with a
clear error for a file that is not one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from targets.weights import BadModelFileError

CHECKPOINT_FORMAT = "blackbox-deepgaze2-readout/1"


def save_atomic(state: object, path: Path) -> None:
    # Write beside the destination and rename: an interruption never leaves a half-written file.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        torch.save(state, handle)
        temporary = Path(handle.name)
    temporary.replace(path)


def load_training_state(path: Path) -> dict:
    """The resumable state in ``last.pt`` (see module doc), or a clear error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise BadModelFileError(
            f"{path} is not a readable DeepGaze II training checkpoint: {error}"
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise BadModelFileError(
            f"{path} is not a DeepGaze II training checkpoint (format {found!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); choose another hydra.run.dir"
        )
    return state


def save_training_state(
    checkpoint_path: Path,
    readout_path: Path,
    *,
    readout: dict[str, torch.Tensor],
    optimizer: dict,
    step: int,
    metadata: dict,
) -> None:
    """``last.pt`` (the resumable state, see module doc) and ``readout`` alone at ``readout_path``."""
    save_atomic(
        {
            "format": CHECKPOINT_FORMAT,
            "state_dict": readout,
            "optimizer": optimizer,
            "step": step,
            "metadata": metadata,
        },
        checkpoint_path,
    )
    save_atomic(readout, readout_path)
