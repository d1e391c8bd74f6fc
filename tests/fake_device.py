"""A fake accelerator for device-placement tests on the CPU (see tests/stages/pretrain/test_device.py).

A ``TorchFunctionMode`` plays the GPU: the model's parameters and buffers are tagged as "on the
device", tags follow every op's outputs, ``.to(device)`` tags (it would copy to the GPU), ``.cpu()``
and tensors made from numpy or without ``device=`` are host tensors, and an op that mixes a device
tensor with a host tensor of more than one element fails, as it would on CUDA.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

TAG = "_cf_on_device"


def _on_device(t: torch.Tensor) -> bool:
    return bool(getattr(t, TAG, False))


def _tag(t: torch.Tensor) -> torch.Tensor:
    setattr(t, TAG, True)
    return t


class DeviceMismatch(AssertionError):
    pass


class FakeDevice(TorchFunctionMode):
    """Fails any op that mixes a device tensor with a host tensor (0-d host tensors are allowed, as
    CUDA allows CPU scalars). Passes everything through until ``armed`` (the model is built)."""

    def __init__(self, armed: bool = True) -> None:
        super().__init__()
        self.armed = armed

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if not self.armed:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        dev = [t for t in tensors if _on_device(t)]
        host = [t for t in tensors if not _on_device(t) and t.dim() > 0]
        moves = name in ("to", "cuda") and any(
            isinstance(a, torch.device) or (isinstance(a, torch.Tensor) and _on_device(a))
            for a in [*args[1:], *kwargs.values()]
        )
        if dev and host and not moves and name not in ("__get__", "__set__"):
            raise DeviceMismatch(
                f"{name}: device tensors {[tuple(t.shape) for t in dev]} mixed with host tensors "
                f"{[tuple(t.shape) for t in host]}"
            )
        out = func(*args, **kwargs)
        if name == "cpu":
            return out.clone() if out is args[0] else out  # a host copy, as on a GPU
        if moves:
            out = out.clone() if out is args[0] else out  # .to(device) copies to the GPU there
            return _tag(out)
        # factories given device=<a torch.device> (e.g. torch.arange(n, device=z.device)) make
        # device tensors; device="cpu" spelled out or no device at all make host tensors
        factory_on_device = isinstance(kwargs.get("device"), torch.device)
        if dev or factory_on_device:
            for t in tree_flatten(out)[0] if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    _tag(t)
        return out


def tag_modules(*modules: torch.nn.Module | None) -> None:
    for m in modules:
        if m is None:
            continue
        for p in m.parameters():
            _tag(p)
            # gradients come from autograd (outside the mode); on a GPU they sit beside their parameter
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(lambda p: setattr(p.grad, TAG, True))
        for b in m.buffers():
            _tag(b)
