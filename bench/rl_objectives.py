"""Which pretraining objective recovers CartPole's velocities: temporal, action-conditioned and reversed-motion contrasts vs NT-Xent.

Issue 17 asks for an RL encoder that "sees motion" (state-probe R² on the velocities). This trains
the demo's pixel encoder in one process with each objective on the *training* episodes of an
ingested RL data set and scores a ridge state probe on held-out training episodes (20 % of them,
by episode): validation only, the test episodes are never read. The same encoder, batch, steps,
optimiser and seeds for every objective:

* ``atc`` — ``domains.rl.objectives.ATCObjective`` (positive: the stack one step later; EMA target,
  residual predictor, CURL's bilinear logits), as ``pretrain.loss: atc`` trains it;
* ``curl`` — the same with instance positives (two shifts of one stack);
* ``ntxent`` — the demo's objective: NT-Xent (temperature 0.1) between two DrQ shifts through the
  pretraining MLP head;
* ``ntxent_reverse`` — the same, every key stack played backwards as a further negative;
* ``taco`` / ``taco_hard`` — TACO's action-conditioned contrast (the code of ``o_t`` and the action
  at ``t`` pick out ``o_{t+1}``), ``taco_hard`` with each row's own ``o_t`` as a further negative;
* ``supervised`` — the reference of the issue's goal: the same CNN trained to regress the state on
  the fit episodes (``--supervised-epochs``, 30 as in the payoff bench), then the same probe.

Frames of any size: the encoder is built for the data's (``data.options.size``).

It logs the loss against chance (ln batch) as it goes, so a plateau at chance is visible. Data: the
curated rows of a payoff run (``python -m bench.domain_payoff --domains rl --seeds 1 --set
data.options.episodes=400``)::

    python -m bench.rl_objectives [--data DIR] [--objectives atc,ntxent] [--seeds 0,1,2] [--steps 400]

Writes ``bench/results/rl_objectives.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from bench._meta import BenchRun, fmt_number
from bench.domain_payoff import spread
from domains.rl.objectives import ATCObjective, CURLObjective
from domains.rl.tasks import ridge_probe, train_supervised
from domains.rl.views import apply_policy
from stages.common.diagnostics import effective_rank
from stages.common.encoders import build_encoder, build_projection_head, embed
from stages.common.losses.registry import build_loss
from stages.pretrain.loop import weight_average

RESULTS = Path(__file__).parent / "results"
DATA = Path(os.environ.get("TMPDIR", "/tmp")) / "domain_payoff" / "rl" / "data" / "rl-cartpole" / "curated"
ENCODER = {"name": "pixel_cnn", "num_layers": 4, "num_filters": 32, "feature_dim": 50}  # the demo's
STATE = ("x", "x_dot", "theta", "theta_dot")
SHIFT = [{"name": "shift", "pad": 4}]  # DrQ's, the demo's views


def _train_tables(data: Path, columns: list[str]) -> list[pa.Table]:
    """``columns`` of the rows marked train, file by file in sorted order: the one rule, and so the
    one row order, that :func:`load_training_rows` and :func:`load_actions` share."""
    files = sorted(data.rglob("*.parquet"))
    if not files:
        raise SystemExit(f"--data: no parquet files under {data} (run the RL payoff bench first)")
    tables = []
    for f in files:
        tab = pq.read_table(f, columns=[*columns, "split"])
        tables.append(tab.take(np.flatnonzero(np.asarray(tab.column("split").to_pylist()) == "train")))
    return tables


def load_training_rows(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x ``[N, 2, S*C, H, W]``, state ``[N, 4]``, episode ``[N]``) of the rows marked train."""
    xs, states, groups = [], [], []
    for tab in _train_tables(data, ["x", "shape", "group", "meta"]):
        shape = tuple(tab.column("shape")[0].as_py())  # one frame-stack shape per data set
        # straight from Arrow's buffer: a Python list of 70k floats per row would need ~10x the memory
        xs.append(tab.column("x").combine_chunks().values.to_numpy().reshape((len(tab), *shape)))
        states += [json.loads(m)["state"] for m in tab.column("meta").to_pylist()]
        groups += tab.column("group").to_pylist()
    return np.concatenate(xs), np.asarray(states, dtype=np.float64), np.asarray(groups)


def load_actions(data: Path) -> np.ndarray:
    """The action taken at ``t`` (``[N, a]``) of each training row, in :func:`load_training_rows`' order
    (a second read of the ``meta`` column only, for the objectives that take actions)."""
    metas = [m for tab in _train_tables(data, ["meta"]) for m in tab.column("meta").to_pylist()]
    return np.asarray([json.loads(m)["action"] for m in metas], dtype=np.float32)


class NTXentPairs(nn.Module):
    """The demo's objective in the protocol the RL objectives follow (make_views / loss / after_step)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = build_projection_head(encoder.embedding_dim, {"hidden_dim": 512, "out_dim": 128})
        self.criterion = build_loss("ntxent", 0.1)

    def make_views(self, batch: list[np.ndarray], rng: np.random.Generator) -> tuple[list, list, np.ndarray]:
        first = [apply_policy(x[0], rng, SHIFT) for x in batch]
        second = [apply_policy(x[0], rng, SHIFT) for x in batch]
        return first, [], np.stack(second)

    def loss(self, q: torch.Tensor, _unused: Any, _length: int, keys: np.ndarray) -> torch.Tensor:  # noqa: ANN401
        return self.criterion(self.head(q), self.head(self.encoder(torch.as_tensor(keys))))

    def after_step(self, encoder: nn.Module) -> None:
        pass


def reverse_stack(x: np.ndarray, stack: int) -> np.ndarray:
    """The frame stack ``[S*C, H, W]`` in reverse time order: the same frames, the opposite motion."""
    s_c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(stack, s_c // stack, h, w)[::-1].reshape(s_c, h, w))


def ntxent_with_negatives(z1: torch.Tensor, z2: torch.Tensor, extra: torch.Tensor, t: float) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2N views, every row of ``extra`` a further negative of every view."""
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    e = nn.functional.normalize(extra, dim=1)
    n = z1.shape[0]
    sim = z @ z.T / t
    sim.fill_diagonal_(float("-inf"))
    logits = torch.cat([sim, z @ e.T / t], dim=1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return nn.functional.cross_entropy(logits, target)


class NTXentReversedNegatives(NTXentPairs):
    """NT-Xent whose negatives include every key stack played backwards (``ntxent_reverse``).

    A stack and its reversal hold the same frames and differ only in the direction of motion, so
    telling them apart needs the velocities' signs, which position alone (enough to tell the
    batch's other states apart) does not give: an arrow-of-time hard negative."""

    def __init__(self, encoder: nn.Module, stack: int = 3) -> None:
        super().__init__(encoder)
        self.stack = stack

    def loss(self, q: torch.Tensor, _unused: Any, _length: int, keys: np.ndarray) -> torch.Tensor:  # noqa: ANN401
        backwards = np.stack([reverse_stack(k, self.stack) for k in keys])
        both = self.encoder(torch.as_tensor(np.concatenate([keys, backwards])))
        k, r = both.chunk(2)
        return ntxent_with_negatives(self.head(q), self.head(k), self.head(r), 0.1)


class TACO(nn.Module):
    """TACO (Zheng et al. 2023): the code of ``o_t`` together with the action taken at ``t`` must pick
    out the code of ``o_{t+1}`` among the batch's (InfoNCE on cosine similarity, temperature 0.1).

    ``hard=True`` (``taco_hard``) adds each row's own ``o_t`` as a further negative for its anchor: the
    current stack and the next one show the same scene one step apart, so telling them apart takes
    the motion (where each frame of the stack is), not the position alone.
    """

    def __init__(self, encoder: nn.Module, action_dim: int, hard: bool = False) -> None:
        super().__init__()
        d = encoder.embedding_dim
        self.encoder, self.hard = encoder, hard
        self.action = nn.Sequential(nn.Linear(action_dim, 64), nn.ReLU(), nn.Linear(64, 64))
        # projection MLPs with BatchNorm, as the demo's NT-Xent head: without it the codes of
        # near-identical frames start almost parallel and plain TACO sat at chance (ln 128) for all
        # 400 steps of a first run
        self.g = build_projection_head(d + 64, {"hidden_dim": 512, "out_dim": 128})  # (state, action)
        self.h = build_projection_head(d, {"hidden_dim": 512, "out_dim": 128})  # the next state
        self.actions: torch.Tensor | None = None

    def set_actions(self, actions: np.ndarray) -> None:
        self.actions = torch.as_tensor(actions)

    def make_views(self, batch: list[np.ndarray], rng: np.random.Generator) -> tuple[list, list, np.ndarray]:
        anchors = [apply_policy(x[0], rng, SHIFT) for x in batch]
        nxt = [apply_policy(x[1], rng, SHIFT) for x in batch]
        now = [apply_policy(x[0], rng, SHIFT) for x in batch] if self.hard else []
        return anchors, [], np.stack(nxt + now)

    def loss(self, q: torch.Tensor, _unused: Any, _length: int, keys: np.ndarray) -> torch.Tensor:  # noqa: ANN401
        assert self.actions is not None, "set_actions(batch actions) first"
        n = q.shape[0]
        k = nn.functional.normalize(self.h(self.encoder(torch.as_tensor(keys))), dim=1)
        pred = nn.functional.normalize(self.g(torch.cat([q, self.action(self.actions)], dim=1)), dim=1)
        logits = pred @ k.T / 0.1  # [n, n] next states, then [n, n] current states when hard
        if self.hard:  # only each row's own current stack is its extra negative
            own = logits[:, n:].diagonal().unsqueeze(1)
            logits = torch.cat([logits[:, :n], own], dim=1)
        return nn.functional.cross_entropy(logits, torch.arange(n))

    def after_step(self, encoder: nn.Module) -> None:
        pass


def make_objective(name: str, encoder: nn.Module, action_dim: int = 1) -> nn.Module:
    if name in ("taco", "taco_hard"):
        return TACO(encoder, action_dim, hard=name == "taco_hard")
    if name == "ntxent":
        return NTXentPairs(encoder)
    if name == "ntxent_reverse":
        return NTXentReversedNegatives(encoder)
    obj = {"atc": ATCObjective, "curl": CURLObjective}[name]()
    obj.bind(encoder)
    return obj


def train_and_probe(
    name: str,
    seed: int,
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    fit: np.ndarray,
    val: np.ndarray,
    args: argparse.Namespace,
    actions: np.ndarray | None = None,
) -> dict[str, Any]:
    x = data[0]  # the states and episodes are for the probe
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = build_encoder("rl", {**ENCODER, "feature_dim": args.feature_dim, "image_size": x.shape[-1]})
    if name == "supervised":
        return probe_supervised(encoder, seed, data, fit, val, args)
    obj = make_objective(name, encoder, 1 if actions is None else actions.shape[1])
    params = {id(p): p for p in [*encoder.parameters(), *obj.parameters()] if p.requires_grad}
    opt = torch.optim.Adam(params.values(), lr=args.lr)
    # --weight-average swa: the probe reads the uniform mean of the encoder's weights over every step
    # (pretrain.weight_average: swa, with the stage's own constructor)
    average = weight_average(encoder) if args.weight_average == "swa" else None
    curve, t0 = [], time.perf_counter()
    for step in range(args.steps):
        encoder.train()
        obj.train()
        idx = rng.choice(fit, args.batch, replace=False)
        batch = list(x[idx])
        if isinstance(obj, TACO):
            obj.set_actions(actions[idx])
        anchors, _, keys = obj.make_views(batch, rng)
        loss = obj.loss(encoder(torch.as_tensor(np.stack(anchors))), None, 0, keys)
        opt.zero_grad()
        loss.backward()
        opt.step()
        obj.after_step(encoder)
        if average is not None:
            average.update_parameters(encoder)
        if step % 50 == 0 or step == args.steps - 1:
            curve.append([step, round(loss.item(), 4)])
            print(f"rl_objectives: {name} seed {seed} step {step} loss {loss.item():.3f}", flush=True)
    probed = encoder if average is None else average.module
    return probe_encoder(probed, data, fit, val, curve, time.perf_counter() - t0)


def probe_encoder(
    encoder: nn.Module,
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    fit: np.ndarray,
    val: np.ndarray,
    curve: list[list[float]],
    train_s: float,
) -> dict[str, Any]:
    """The ridge state probe of a trained encoder: fitted on the fit rows, R² on the validation rows."""
    x, y, g = data
    # the domain's collate keeps the stack at t of each row, as every probe of the project does
    f_fit, f_val = embed(encoder, "rl", list(x[fit])), embed(encoder, "rl", list(x[val]))
    probe = ridge_probe(f_fit, y[fit], g[fit], f_val, y[val])
    return {
        "r2": {k: round(float(v), 4) for k, v in zip(STATE, probe.r2, strict=True)},
        "rankme": round(effective_rank(torch.from_numpy(f_fit)), 2),
        "loss_curve": curve,
        "train_s": round(train_s, 1),
    }


def probe_supervised(
    encoder: nn.Module,
    seed: int,
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    fit: np.ndarray,
    val: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The reference the issue's goal names: the same CNN trained end to end to regress the state on
    the fit episodes (``domains.rl.tasks.train_supervised``, its epoch chosen on episodes held out
    from them), then the same ridge probe. Validation episodes stay unseen until the probe scores."""
    x, y, g = data
    t0 = time.perf_counter()
    train_supervised(encoder, list(x[fit]), y[fit], epochs=args.supervised_epochs, seed=seed, groups=g[fit])
    # no contrastive loss to log: an empty curve (a NaN point made the result JSON non-standard)
    return probe_encoder(encoder, data, fit, val, [], time.perf_counter() - t0)


def final_loss(runs: list[dict[str, Any]]) -> float | None:
    """The seeds' mean last logged loss; None for runs without a loss curve (the supervised reference)."""
    if not all(r["loss_curve"] for r in runs):
        return None
    return round(float(np.mean([r["loss_curve"][-1][1] for r in runs])), 4)


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# RL objectives: state-probe R² on validation episodes",
        "",
        # results written before --feature-dim existed were all the demo's width
        f"Demo pixel encoder ({res.get('feature_dim', ENCODER['feature_dim'])}-d embedding) trained in "
        f"one process for {res['steps']} steps (batch {res['batch']}, "
        f"Adam {res['lr']}), ridge state probe fitted on {res['fit_rows']} rows of the training "
        f"episodes, scored on {res['val_rows']} rows of {res['val_episodes']} held-out training "
        f"episodes (the test episodes are never read); mean ± std over seeds {res['seeds']}. "
        f"Chance loss for the contrastive objectives: ln {res['batch']} = {np.log(res['batch']):.2f}. "
        "Written by `python -m bench.rl_objectives`.",
        "",
        "| objective | " + " | ".join(STATE) + " | RankMe | final loss |",
        "|---|" + "---|" * (len(STATE) + 2),
    ]
    for name, v in res["objectives"].items():
        cells = [f"{v['r2'][k]['mean']:.3f} ± {v['r2'][k]['std']:.3f}" for k in STATE]
        loss = fmt_number(v["final_loss"], ".2f")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {v['rankme']:.1f} | {loss} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rl_objectives", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="curated (or ingested) RL rows, parquet")
    ap.add_argument(
        "--objectives",
        default="atc,ntxent",
        help="subset of atc, curl, ntxent, ntxent_reverse, taco, taco_hard, supervised (the reference)",
    )
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--supervised-epochs", type=int, default=30, help="as bench.domain_payoff trains it")
    ap.add_argument("--val-fraction", type=float, default=0.2, help="training episodes held out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--feature-dim",
        type=int,
        default=ENCODER["feature_dim"],
        help="the encoder's embedding width, for every objective and the supervised reference (the demo's: 50)",
    )
    ap.add_argument(
        "--weight-average",
        choices=("none", "swa"),
        default="none",
        help="swa: probe the uniform average of the encoder's weights over all steps (results keyed <objective>+swa)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "rl_objectives.json")
    args = ap.parse_args(argv)
    names = args.objectives.split(",")
    known = {"atc", "curl", "ntxent", "ntxent_reverse", "taco", "taco_hard", "supervised"}
    if set(names) - known:
        raise SystemExit(f"--objectives: unknown {sorted(set(names) - known)}")
    torch.set_num_threads(args.threads)
    run = BenchRun()
    x, y, g = load_training_rows(args.data)
    actions = load_actions(args.data) if any(n.startswith("taco") for n in names) else None
    episodes = np.unique(g)
    held = set(
        np.random.default_rng(0).choice(
            episodes, max(1, int(len(episodes) * args.val_fraction)), replace=False
        )
    )
    val = np.flatnonzero([e in held for e in g])
    fit = np.flatnonzero([e not in held for e in g])
    seeds = [int(s) for s in args.seeds.split(",")]
    res: dict[str, Any] = {
        "data": str(args.data),
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "weight_average": args.weight_average,
        "feature_dim": args.feature_dim,
        "seeds": seeds,
        "fit_rows": len(fit),
        "val_rows": len(val),
        "val_episodes": len(held),
        "objectives": {},
    }
    for name in names:
        runs = [train_and_probe(name, s, (x, y, g), fit, val, args, actions) for s in seeds]
        key = name if args.weight_average == "none" or name == "supervised" else f"{name}+swa"
        res["objectives"][key] = {
            "r2": {k: spread([r["r2"][k] for r in runs]) for k in STATE},
            "rankme": round(float(np.mean([r["rankme"] for r in runs])), 2),
            "final_loss": final_loss(runs),
            "runs": runs,
        }
    if run.write_json(args.out, res):
        run.write_text(args.out.with_suffix(".md"), markdown(res))
    print(markdown(res) + run.footer())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
