"""CPU cost of each registered loss alone: forward + backward on fixed (2 x B, D) embeddings.

Measured as process CPU time (``time.process_time``, one torch thread), which a busy shared machine
inflates far less than wall time. Momentum losses get a small MLP as the model their target copies, so
their cost includes the target forward. Run: ``python -m bench.losses_speed [--batch 16 --dim 128]``;
writes bench/results/losses_speed.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from bench._meta import BenchRun
from stages.common.heads import EncoderWithHead
from stages.common.losses import ModelLoss, build_loss, list_losses

RESULTS = Path(__file__).parent / "results"


def cost_ms(name: str, batch: int, dim: int, reps: int) -> float:
    torch.manual_seed(0)
    model = EncoderWithHead(nn.Linear(dim, dim), nn.Identity())
    model.encoder.embedding_dim = dim
    loss_fn = build_loss(name, 0.1)
    if isinstance(loss_fn, ModelLoss):
        loss_fn.attach(model)
    x = torch.randn(2 * batch, dim)
    extra = {"inputs": x} if getattr(loss_fn, "needs_inputs", False) else {}
    for i in range(reps + 3):  # 3 warm-up calls
        if i == 3:
            start = time.process_time()
        _, z = model(x)
        loss_fn(z[:batch], z[batch:], **extra).backward()
        if isinstance(loss_fn, ModelLoss):
            loss_fn.on_step(model)
    return (time.process_time() - start) / reps * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args(argv)
    run = BenchRun()
    torch.set_num_threads(1)
    rows = [(n, cost_ms(n, args.batch, args.dim, args.reps)) for n in list_losses() if n != "infonce"]
    text = f"Loss forward+backward, CPU ms per call, batch {args.batch} pairs, dim {args.dim}, 1 thread\n\n"
    text += "| loss | CPU ms |\n|---|---|\n" + "".join(f"| {n} | {ms:.2f} |\n" for n, ms in rows)
    print(text)
    run.write_text(RESULTS / "losses_speed.md", text)


if __name__ == "__main__":
    main()
