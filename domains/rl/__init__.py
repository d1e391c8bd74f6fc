"""RL state-encoder domain: contrastive pixel encoders judged by how much true state they hold.

``x`` is a float32 ``[2, S*C, H, W]`` in [0, 1]: the frame stack at ``t`` and the one ``k`` steps
later (see ``readers.episode_rows``); ``group`` is the episode. Encoders see ``x[0]`` (``collate``),
objectives (CURL, ATC) may use ``x[1]``. The domain has no classification task, so the shared probes
and fine-tuning skip it; ``evaluate`` runs the state probe (and, when asked, the agent comparison).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from domains import register_domain
from domains.base import Domain, DomainResult, EvalContext, Row, ViewPolicy
from domains.options import build_named
from domains.rl.encoders import ENCODERS
from domains.rl.objectives import ATCObjective, CURLObjective
from domains.rl.options import ENCODER_OPTIONS, EVALUATE_OPTIONS, SOURCE_OPTIONS
from domains.rl.readers import SOURCES
from domains.rl.views import apply_policy, resolve

FINGERPRINT_SIDE = 8


def _current(x: np.ndarray) -> np.ndarray:
    """The frame stack at ``t`` of a stored row (4-D) or an already-made view (3-D)."""
    return x[0] if x.ndim == 4 else x


@register_domain("rl")
class RLDomain(Domain):
    sources = SOURCES
    source_options = SOURCE_OPTIONS
    encoder_options = ENCODER_OPTIONS
    evaluate_options = EVALUATE_OPTIONS
    tasks = ("state_probe", "episode_return")

    def validate(self, row: Row) -> str | None:
        x = row["x"]
        if x.ndim != 4 or x.shape[0] != 2:
            return f"expected [2, planes, H, W] (current and future frame stacks), got {tuple(x.shape)}"
        if not np.isfinite(x).all():
            return f"non-finite pixels: {int((~np.isfinite(x)).sum())} of {x.size}"
        if x.min() < 0.0 or x.max() > 1.0:
            return f"pixels outside [0, 1]: [{x.min():.3g}, {x.max():.3g}]"
        meta = row.get("meta") or {}
        state = np.asarray(meta.get("state", []), dtype=np.float64)
        if state.size == 0:
            return "no true state in meta"
        if not np.isfinite(state).all():
            return "non-finite true state"
        if not np.isfinite(float(meta.get("reward", np.nan))):
            return "non-finite or missing reward"
        return None

    def fingerprint(self, xs: list[np.ndarray]) -> np.ndarray:
        """The current stack's last frame, area-pooled to 8×8 (per channel), minus its mean.

        Mean-removed so that near-duplicate detection compares layouts, not the shared background.
        """
        out = []
        for x in xs:
            f = _current(x)[-1:]
            s = f.shape[-1] // FINGERPRINT_SIDE
            pooled = f[:, : s * FINGERPRINT_SIDE, : s * FINGERPRINT_SIDE]
            pooled = pooled.reshape(f.shape[0], FINGERPRINT_SIDE, s, FINGERPRINT_SIDE, s).mean((2, 4))
            out.append((pooled - pooled.mean()).reshape(-1))
        return np.asarray(out, dtype=np.float32)

    def augment(self, x: np.ndarray, rng: np.random.Generator, policy: ViewPolicy) -> np.ndarray:
        """One view of the current frame stack (``[S*C, H, W]``)."""
        return apply_policy(_current(x), rng, resolve(policy.name, policy.params))

    def data_args(self, x: np.ndarray) -> dict[str, Any]:
        return {"in_channels": int(x.shape[-3]), "image_size": int(x.shape[-1])}

    def build_encoder(self, cfg: dict[str, Any]) -> nn.Module:
        return build_named(ENCODERS, cfg, "RL")

    def collate(self, xs: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack([_current(np.asarray(x, dtype=np.float32)) for x in xs]))

    def objectives(self) -> dict[str, Any]:
        return {"curl": CURLObjective, "atc": ATCObjective}

    def evaluate(self, ctx: EvalContext) -> DomainResult | None:
        from domains.rl.tasks import state_probe

        if not ctx.train_rows or not ctx.test_rows:
            # The state probe fits on training episodes and scores held-out ones: a few offline
            # episodes that all hashed to one split leave nothing to score, not a crash.
            print(
                f"evaluate[rl]: state probe skipped: {len(ctx.train_rows)} training / "
                f"{len(ctx.test_rows)} test steps (see data.options.test_fraction)"
            )
            return None
        opts = dict((ctx.recipe.get("evaluate") or {}).get("domain") or {})
        enc_cfg = _encoder_config(ctx)
        n_state = len(ctx.train_rows[0]["meta"]["state"])
        names = opts.get("state_names") or [f"s{i}" for i in range(n_state)]
        if len(names) != n_state:
            raise ValueError(f"evaluate.domain.state_names has {len(names)} names for {n_state} state dims")
        metrics, table = state_probe(ctx, lambda: self.build_encoder(enc_cfg), opts, list(names))
        md = [
            "## State probe (ridge from frozen embeddings; R² on held-out test episodes)\n",
            f"{len(ctx.train_rows)} training / {len(ctx.test_rows)} test steps from "
            f"{len({r['group'] for r in ctx.train_rows})} / {len({r['group'] for r in ctx.test_rows})} episodes. "
            "`supervised`: the same encoder trained end to end to regress the state from pixels (its epoch "
            "chosen on held-out training episodes); "
            "`raw_pixels`: ridge on the current frame stack's pixels. `n/a`: constant target. "
            "[brackets]: 95 % interval over test episodes resampled with replacement.\n",
            "| encoder | " + " | ".join([*names, "reward", "state mean"]) + " |",
            "|" + "---|" * (len(names) + 3),
            *["| " + " | ".join(str(c) for c in row) + " |" for row in table],
            "",
        ]
        out: dict[str, Any] = {"state_probe": metrics}
        agent = opts.get("agent")
        if agent:
            from domains.rl.agent import agent_eval

            res, text = agent_eval(ctx, enc_cfg, agent)
            out["agent"] = res
            md += [text, ""]
        return DomainResult(metrics=out, markdown="\n".join(md))


def _encoder_config(ctx: EvalContext) -> dict[str, Any]:
    enc = ctx.encoders["random_init"]
    return {
        "in_channels": enc.in_channels,
        "image_size": enc.image_size,
        "feature_dim": enc.embedding_dim,
        "num_filters": enc.convs[0].out_channels,
        "num_layers": sum(isinstance(m, nn.Conv2d) for m in enc.convs),
    }
