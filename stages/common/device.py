"""Which device a stage computes on, moving batches there, and mixed precision.

Pretraining gets its device from Ray Train (``ray.train.torch.get_device()``, one GPU per worker
with ``ray.use_gpu: true``); code that runs outside Ray Train (fine-tuning, evaluation, benches)
asks :func:`pick_device`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch

Precision = Literal["fp32", "bf16"]


def pick_device(use_gpu: bool) -> torch.device:
    """``cuda`` when asked for and visible, else ``cpu``.

    A recipe with ``ray.use_gpu: true`` may run its driver-side stages on a node without a GPU (a
    cluster's head); that falls back to the CPU with a logged line rather than failing the stage.
    """
    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if use_gpu:
        print("device: ray.use_gpu=true but no CUDA device is visible here; using the CPU", flush=True)
    return torch.device("cpu")


def to_device(batch: Any, device: torch.device) -> Any:  # noqa: ANN401 - a tensor or nested lists/tuples/dicts of them
    """``batch`` with every tensor on ``device``; lists, tuples and dicts are walked.

    ``non_blocking``: host-to-GPU copies of pinned memory overlap with compute; from pageable memory
    (what ``torch.from_numpy`` gives) the copy is synchronous either way, so this is never wrong.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, list):
        return [to_device(b, device) for b in batch]
    if isinstance(batch, tuple):
        return tuple(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``pretrain.precision`` on ``device``; None: plain fp32.

    bf16 autocasts on CUDA only. On the CPU it falls back to fp32: CPU bf16 autocast is correct but
    slower than fp32 on CPUs without AMX/AVX512-BF16 (most of them, this project's 2-core CI box
    included), and the CPU is where tests and the demo run.
    """
    if precision == "bf16" and device.type == "cuda":
        return torch.bfloat16
    return None


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the forward pass and loss at ``precision`` (a no-op context for fp32).

    bf16 has fp32's exponent range, so no gradient scaler is needed; softmax, log-softmax,
    cross-entropy and norms run in fp32 under autocast anyway.
    """
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
