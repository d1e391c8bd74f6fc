"""Label-efficient segmentation: Dice after fine-tuning with very few labelled patches.

The shape of MONAI's self-supervised tutorial (BTCV Dice with 6 labelled volumes, random init vs
pretrained): for each label budget (a handful of training patches with their tissue masks) and
seed, a segmentation network is built around a copy of the pretrained encoder and around a copy of
the random-init encoder (same architecture, same fresh decoder seed), both fine-tuned end to end
with MONAI's ``DiceCELoss`` for the same number of steps, then scored with ``DiceMetric`` per class
on held-out test patches (test regions never seen in training).

Beside the two networks, on the same labelled patches and test patches: the classical baseline of
tissue segmentation, class-conditional Gaussians on each voxel's intensity (the intensity model of
FSL FAST and SPM's unified segmentation, without their spatial priors and bias correction), fitted
on the labelled voxels. GM, WM and CSF differ mainly in T1 intensity, so this baseline says how much
of a network's Dice a per-voxel threshold already gives.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from domains.base import DomainResult, EvalContext, Row
from domains.medical.volumes import decode_mask

DEFAULTS: dict[str, Any] = {
    "budgets": [4, 16, 64],
    "steps": 150,
    "batch_size": 4,
    "lr": 1e-3,
    "seeds": [0],
    "max_test": 256,
    # the encoder's learning rate as a fraction of ``lr`` (the decoder's), one value for both arms or
    # one per arm (``{pretrained: 0.1, random_init: 1.0}``); 0 freezes the encoder (its weights and its
    # BatchNorm statistics: only the decoder learns, from the features the probes see)
    "encoder_lr_scale": 1.0,
    # the fresh decoder's normalisation (MONAI norm name), the same for both arms. Batch, not
    # MONAI's usual instance: InstanceNorm takes each patch's own mean out of every feature map, and
    # absolute T1 intensity is what tells the tissues apart. On validation patches (rule fixed
    # first) batch gave 0.894 Dice against 0.849 (bench/results/medical_decoder_norm_validation.md)
    "decoder_norm": "batch",
}

#: the decoder norms ``evaluate.domain.decoder_norm`` accepts
DECODER_NORMS = ("instance", "batch")


#: the baseline's name in the metrics (``dice.intensity``, runs with ``init: intensity``)
INTENSITY = "intensity"
#: the protocol's arms, in the order its tables list them
ARMS = ("pretrained", "random_init", INTENSITY)


def _masks(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    xs = np.stack([r["x"] for r in rows]).astype(np.float32)
    ys = np.stack([decode_mask(r["meta"]["seg"], r["x"].shape[1:]) for r in rows]).astype(np.int64)
    return xs, ys[:, None]


def finetune_dice(
    encoder: torch.nn.Module,
    n_classes: int,
    xs: np.ndarray,
    ys: np.ndarray,
    test_xs: np.ndarray,
    test_ys: np.ndarray,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    encoder_lr_scale: float = 1.0,
    decoder_norm: str = DEFAULTS["decoder_norm"],
) -> np.ndarray:
    """Fine-tune ``encoder.segmenter(n_classes, decoder_norm)`` on ``(xs, ys)``; per-class test Dice
    (no background).

    The encoder's parameters learn at ``lr * encoder_lr_scale``, the fresh decoder's at ``lr``;
    ``encoder_lr_scale == 0`` freezes the encoder, BatchNorm statistics included."""
    from monai.losses import DiceCELoss

    if encoder_lr_scale < 0:
        raise ValueError(f"evaluate.domain.encoder_lr_scale must be >= 0, got {encoder_lr_scale}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    enc = copy.deepcopy(encoder)
    net = enc.segmenter(n_classes, decoder_norm)  # the segmenter holds these very encoder modules
    enc_ids = {id(p) for p in enc.parameters()}
    decoder_params = [p for p in net.parameters() if id(p) not in enc_ids]
    groups = [{"params": decoder_params, "lr": lr}]
    if encoder_lr_scale > 0:
        groups.append({"params": list(enc.parameters()), "lr": lr * encoder_lr_scale})
    else:
        enc.requires_grad_(False)
    net.train()
    if encoder_lr_scale == 0:
        enc.eval()  # frozen means the pretrained BatchNorm statistics too
    optim = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    bs = min(batch_size, len(xs))
    for _ in range(steps):
        idx = rng.choice(len(xs), size=bs, replace=len(xs) < bs)
        x, y = torch.from_numpy(xs[idx]), torch.from_numpy(ys[idx])
        if rng.random() < 0.5:  # left-right flip, the one geometric change tissue labels allow for free
            x, y = x.flip(2), y.flip(2)
        loss = loss_fn(net(x), y)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    net.eval()
    with torch.no_grad():
        return _test_dice(
            lambda x: net(torch.from_numpy(x)).argmax(1, keepdim=True), test_xs, test_ys, n_classes
        )


def _test_dice(
    predict: Callable[[np.ndarray], torch.Tensor | np.ndarray],
    test_xs: np.ndarray,
    test_ys: np.ndarray,
    n_classes: int,
) -> np.ndarray:
    """Per-class Dice (background excluded, empty classes ignored) of ``predict``'s label maps
    ``[B, 1, ...]`` on the test patches, 16 at a time: how every arm of the protocol is scored."""
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    metric = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True)
    for i in range(0, len(test_xs), 16):
        pred = torch.as_tensor(predict(test_xs[i : i + 16]))
        metric(one_hot(pred, n_classes), one_hot(torch.from_numpy(test_ys[i : i + 16]), n_classes))
    return metric.aggregate().cpu().numpy()


def intensity_dice(
    n_classes: int, xs: np.ndarray, ys: np.ndarray, test_xs: np.ndarray, test_ys: np.ndarray
) -> np.ndarray:
    """The intensity baseline (module doc): Gaussian naive Bayes on the voxels' channel values,
    fitted on the labelled patches ``(xs, ys)`` only; per-class test Dice as the networks get it."""
    from sklearn.naive_bayes import GaussianNB

    def voxels(x: np.ndarray) -> np.ndarray:  # [B, C, ...] -> [B * voxels, C]
        return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])

    clf = GaussianNB().fit(voxels(xs), ys.reshape(-1))
    return _test_dice(
        lambda x: clf.predict(voxels(x)).reshape(len(x), 1, *x.shape[2:]), test_xs, test_ys, n_classes
    )


@dataclass(frozen=True)
class _DiceData:
    """What every Dice fine-tune reads (sent once to Ray's object store when runs are tasks)."""

    encoders: dict[str, torch.nn.Module]
    n_classes: int
    xs: np.ndarray
    ys: np.ndarray
    test_xs: np.ndarray
    test_ys: np.ndarray
    opts: dict[str, Any]


def _dice_run(d: _DiceData, run: tuple[int, int, str, np.ndarray]) -> tuple[np.ndarray, float]:
    """One (budget, seed, init, picked patches) fine-tune: its per-class test Dice and seconds."""
    _, seed, init, pick = run
    t0 = time.perf_counter()
    o = d.opts
    dice = finetune_dice(
        d.encoders[init], d.n_classes, d.xs[pick], d.ys[pick], d.test_xs, d.test_ys,
        int(o["steps"]), int(o["batch_size"]), float(o["lr"]), seed, encoder_lr_scale(o, init),
        o["decoder_norm"],
    )  # fmt: skip
    return dice, time.perf_counter() - t0


def encoder_lr_scale(opts: dict[str, Any], init: str) -> float:
    """The arm's ``encoder_lr_scale``: the one value, or the arm's entry of a per-arm mapping."""
    scale = opts["encoder_lr_scale"]
    if isinstance(scale, dict):
        unknown = sorted(set(scale) - {"pretrained", "random_init"})
        if unknown:
            raise ValueError(
                f"evaluate.domain.encoder_lr_scale: unknown arm(s) {unknown}; accepted: pretrained, random_init"
            )
        scale = scale.get(init, DEFAULTS["encoder_lr_scale"])
    return float(scale)


def segmentation_dice(ctx: EvalContext, options: dict[str, Any]) -> DomainResult | None:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"evaluate.domain: unknown option(s) {unknown}; accepted: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **options}
    if opts["decoder_norm"] not in DECODER_NORMS:
        raise ValueError(
            f"evaluate.domain.decoder_norm must be one of {list(DECODER_NORMS)}, got {opts['decoder_norm']!r}"
        )
    train = [r for r in ctx.train_rows if "seg" in (r.get("meta") or {})]
    test = [r for r in ctx.test_rows if "seg" in (r.get("meta") or {})]
    if not train or not test:
        return None
    rng = np.random.default_rng(ctx.seed)
    if len(test) > opts["max_test"]:
        test = [test[i] for i in sorted(rng.choice(len(test), opts["max_test"], replace=False))]
    xs, ys = _masks(train)
    test_xs, test_ys = _masks(test)
    names = list(train[0]["meta"].get("seg_classes") or [])
    n_classes = max(len(names), int(max(ys.max(), test_ys.max())) + 1)
    names = names or [f"class{i}" for i in range(n_classes)]
    plan = [
        (budget, seed, init, np.random.default_rng([seed, budget]).choice(len(xs), budget, replace=False))
        for budget in opts["budgets"]
        if budget <= len(xs)
        for seed in opts["seeds"]
        for init in ("pretrained", "random_init")
    ]
    shared = _DiceData(ctx.encoders, n_classes, xs, ys, test_xs, test_ys, opts)
    results: list[dict[str, Any]] = []

    def record(init: str, budget: int, seed: int, dice: np.ndarray, note: str = "") -> None:
        per = {names[c + 1]: float(d) for c, d in enumerate(dice)}
        results.append(
            {"init": init, "budget": int(budget), "seed": seed, "dice": per, "mean": float(np.nanmean(dice))}
        )
        print(
            f"evaluate: dice {init} {budget} patches seed {seed}: mean {np.nanmean(dice):.4f} {per}{note}",
            flush=True,
        )

    for (budget, seed, init, _), (dice, seconds) in zip(
        plan, ctx.map_runs(_dice_run, shared, plan), strict=True
    ):
        record(init, budget, seed, dice, f" ({seconds:.0f}s)")
    if not results:
        return None
    # the intensity baseline on each (budget, seed)'s labelled patches: no network, 0.3 s a fit (2 s for the first, with imports)
    for budget, seed, init, pick in plan:
        if init == "pretrained":
            record(INTENSITY, budget, seed, intensity_dice(n_classes, xs[pick], ys[pick], test_xs, test_ys))
    summary: dict[str, dict[str, float]] = {}
    for init in ARMS:
        for budget in sorted({r["budget"] for r in results}):
            rs = [r for r in results if r["init"] == init and r["budget"] == budget]
            summary.setdefault(init, {})[f"{budget}_patches"] = float(np.mean([r["mean"] for r in rs]))
    classes = list(results[0]["dice"])
    lines = [
        "## Segmentation Dice after fine-tuning on few labelled patches\n",
        f"{len(test)} test patches (held-out regions); {opts['steps']} steps of DiceCE, batch "
        f"{opts['batch_size']}, {opts['decoder_norm']}-norm decoder; mean over seeds {opts['seeds']}. Dice per class, background excluded. "
        f"`{INTENSITY}`: no network, class-conditional Gaussians on the labelled voxels' intensity.\n",
        "| labelled patches | init | " + " | ".join(classes) + " | mean |",
        "|---|---|" + "---|" * (len(classes) + 1),
    ]
    for budget in sorted({r["budget"] for r in results}):
        for init in ARMS:
            rs = [r for r in results if r["init"] == init and r["budget"] == budget]
            cells = [f"{np.mean([r['dice'][c] for r in rs]):.4f}" for c in classes]
            lines.append(
                f"| {budget} | {init} | " + " | ".join(cells) + f" | {np.mean([r['mean'] for r in rs]):.4f} |"
            )
    return DomainResult(
        metrics={"dice": summary, "dice_runs": results, "dice_test_patches": len(test)},
        markdown="\n".join(lines) + "\n",
    )
