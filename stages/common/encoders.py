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
from stages.common.storage import atomic_dir, join, read_bytes, write_bytes, write_json


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


def save_encoder(uri: str, encoder: nn.Module, config: dict[str, Any], card: str = "") -> None:
    """Write ``encoder.safetensors``, ``config.json`` (domain + encoder args) and a model card."""
    with atomic_dir(uri) as tmp:
        write_bytes(join(tmp, "encoder.safetensors"), state_to_bytes(encoder))
        write_json(join(tmp, "config.json"), config)
        if card:
            write_bytes(join(tmp, "README.md"), card.encode())


def load_encoder(uri: str) -> nn.Module:
    """Rebuild the encoder from ``config.json`` and load its safetensors weights (eval mode)."""
    config = json.loads(read_bytes(join(uri, "config.json")))
    encoder = build_encoder(config["domain"], config["encoder"])
    load_state_bytes(encoder, read_bytes(join(uri, "encoder.safetensors")))
    return encoder.eval()


@torch.no_grad()
def embed(encoder: nn.Module, domain_name: str, xs: list, batch_size: int = 64) -> np.ndarray:
    """Frozen features ``[N, D]`` of samples ``xs`` (encoder in eval mode, no gradients)."""
    domain = get_domain(domain_name)
    encoder.eval()
    out = [
        encoder(domain.collate(xs[i : i + batch_size])).cpu().numpy() for i in range(0, len(xs), batch_size)
    ]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, encoder.embedding_dim), np.float32)
