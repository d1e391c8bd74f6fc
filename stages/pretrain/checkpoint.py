"""A pretraining checkpoint: one directory that Ray Train reports and a resumed run reads back.

Weights as safetensors; the optimiser's and the loss's state with ``torch.save``, read back with
``weights_only=True`` (a checkpoint is data, never code); the epoch and the history as JSON.
"""

from __future__ import annotations

import json
import os

import torch
from torch.optim.swa_utils import AveragedModel

from stages.common.encoders import load_state_bytes, state_to_bytes

CKPT_MODEL = "model.safetensors"
CKPT_OPTIM = "optimizer.pt"
CKPT_STATE = "state.json"
#: state of a loss that owns modules (momentum target, queue, predictor, prototypes), when it has any
CKPT_LOSS = "loss.pt"
#: the running weight average (``pretrain.weight_average: swa``) with its count; when present it,
#: not ``CKPT_MODEL``, is the model the stage exports
CKPT_AVERAGE = "average.safetensors"


def save_checkpoint(
    directory: str,
    model: torch.nn.Module,
    optim: torch.optim.Optimizer,
    state: dict,
    loss: torch.nn.Module | None = None,
    average: AveragedModel | None = None,
) -> None:
    with open(os.path.join(directory, CKPT_MODEL), "wb") as f:
        f.write(state_to_bytes(model))
    if average is not None:
        with open(os.path.join(directory, CKPT_AVERAGE), "wb") as f:
            f.write(state_to_bytes(average))
    torch.save(optim.state_dict(), os.path.join(directory, CKPT_OPTIM))
    if loss is not None and loss.state_dict():
        torch.save(loss.state_dict(), os.path.join(directory, CKPT_LOSS))
    with open(os.path.join(directory, CKPT_STATE), "w") as f:
        json.dump(state, f)


def read_weights(directory: str, module: torch.nn.Module, name: str = CKPT_MODEL) -> None:
    """Load one of a checkpoint's safetensors files (``CKPT_MODEL`` or ``CKPT_AVERAGE``) into ``module``."""
    with open(os.path.join(directory, name), "rb") as f:
        load_state_bytes(module, f.read())


def read_state(directory: str) -> dict:
    """A checkpoint's epoch and history."""
    with open(os.path.join(directory, CKPT_STATE)) as f:
        return json.load(f)


def has_average(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, CKPT_AVERAGE))


def load_checkpoint(
    directory: str,
    model: torch.nn.Module,
    optim: torch.optim.Optimizer,
    loss: torch.nn.Module | None = None,
    average: AveragedModel | None = None,
) -> dict:
    """Everything a resumed run needs, read back into the run's own modules; returns the state."""
    read_weights(directory, model)
    if average is not None:
        if not has_average(directory):
            # a run started without averaging cannot resume with it: the average of the steps
            # already taken is gone, and restarting it mid-run would not be the configured average
            raise ValueError(
                "pretrain.weight_average: the checkpoint has no weight average; it was written by a run "
                "without one (use a new run directory, or weight_average: none)"
            )
        read_weights(directory, average, CKPT_AVERAGE)
    # weights_only: a checkpoint is data, never code. Read onto the CPU (a checkpoint written on a
    # GPU loads anywhere); load_state_dict then puts each tensor on its parameter's device, so the
    # model and the loss must already be on theirs (build_training does that).
    optim.load_state_dict(
        torch.load(os.path.join(directory, CKPT_OPTIM), map_location="cpu", weights_only=True)
    )
    if loss is not None and os.path.exists(os.path.join(directory, CKPT_LOSS)):
        loss.load_state_dict(
            torch.load(os.path.join(directory, CKPT_LOSS), map_location="cpu", weights_only=True)
        )
    return read_state(directory)
