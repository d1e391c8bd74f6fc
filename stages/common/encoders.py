"""Save and load encoders as safetensors + a JSON config, so anyone can load one in three lines::

from stages.common.encoders import load_encoder
encoder = load_encoder("models/timeseries-gunpoint/pretrained")
embeddings = encoder(batch)          # [B, D]
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from domains import get_domain
from stages.common.storage import atomic_dir, exists, join, read_bytes, write_bytes, write_json


def build_encoder(domain_name: str, encoder_cfg: dict[str, Any]) -> nn.Module:
    return get_domain(domain_name).build_encoder(encoder_cfg)


def state_to_bytes(module: nn.Module) -> bytes:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "w.safetensors")
        save_file(state, path)
        with open(path, "rb") as f:
            return f.read()


def load_state_bytes(module: nn.Module, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "w.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        module.load_state_dict(load_file(path))


#: the pretrained projection head's weights, beside the encoder's; its architecture is
#: ``config["head"]`` (a ``HeadCfg``), absent from models saved before heads were kept
HEAD_FILE = "head.safetensors"


def save_encoder(
    uri: str,
    encoder: nn.Module,
    config: dict[str, Any],
    card: str = "",
    files: dict[str, bytes] | None = None,
) -> None:
    """Write ``encoder.safetensors``, ``config.json`` (domain + encoder args), a model card and any
    extra ``files`` (e.g. the projection head) in one atomic move."""
    with atomic_dir(uri) as tmp:
        write_bytes(join(tmp, "encoder.safetensors"), state_to_bytes(encoder))
        write_json(join(tmp, "config.json"), config)
        if card:
            write_bytes(join(tmp, "README.md"), card.encode())
        for name, data in (files or {}).items():
            write_bytes(join(tmp, name), data)


def load_encoder(uri: str) -> nn.Module:
    """Rebuild the encoder from ``config.json`` and load its safetensors weights (eval mode)."""
    config = json.loads(read_bytes(join(uri, "config.json")))
    encoder = build_encoder(config["domain"], config["encoder"])
    load_state_bytes(encoder, read_bytes(join(uri, "encoder.safetensors")))
    return encoder.eval()


def build_projection_head(embedding_dim: int, head_cfg: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialised projection head of the pretraining architecture (``HeadCfg`` defaults
    when ``head_cfg`` is None)."""
    # Imported here: the head's architecture is defined once, where pretraining builds it, and
    # stages.common must not pull in the pretrain stage at import time.
    from stages.common.heads import build_head
    from stages.common.schema import HeadCfg

    return build_head(int(embedding_dim), HeadCfg(**(head_cfg or {})))


def load_head(uri: str) -> nn.Module | None:
    """The pretrained projection head ``g`` (eval mode), or None when the model has none saved."""
    config = json.loads(read_bytes(join(uri, "config.json")))
    if not config.get("head") or not exists(join(uri, HEAD_FILE)):
        return None
    head = build_projection_head(config["embedding_dim"], config["head"])
    load_state_bytes(head, read_bytes(join(uri, HEAD_FILE)))
    return head.eval()


@torch.no_grad()
def embed(encoder: nn.Module, domain_name: str, xs: list, batch_size: int = 64) -> np.ndarray:
    """Frozen features ``[N, D]`` of samples ``xs`` (encoder in eval mode, no gradients).

    Runs on the encoder's device: move the encoder (``stages.common.device.pick_device``) and the
    batches follow it.
    """
    from stages.common.device import to_device

    domain = get_domain(domain_name)
    encoder.eval()
    device = next(encoder.parameters(), torch.empty(0)).device
    out = [
        encoder(to_device(domain.collate(xs[i : i + batch_size]), device)).float().cpu().numpy()
        for i in range(0, len(xs), batch_size)
    ]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, encoder.embedding_dim), np.float32)
