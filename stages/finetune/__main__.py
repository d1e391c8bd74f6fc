"""Finetune: pretrained encoder + labels → ``models/<recipe>/finetuned/`` + ``finetune.json``.

For each label fraction (1%, 10%, 100% by default) and seed, a classifier is trained on that
fraction of the training labels in up to three modes — ``linear`` (frozen encoder, a logistic-
regression head fitted to convergence, its L2 strength chosen on validation labels: ``linear_head.py``),
``full`` (encoder and head trained end to end) and ``core`` (Core-tuning: full fine-tuning with a
supervised contrastive regulariser on the projection head and mixup-mined hard pairs, see
``core_tuning.py``) — starting from the pretrained encoder and from a random-init one. Random-init + full is the supervised baseline on the same labels.

Label budgets are honest: a run at fraction ``f`` sees ``f`` of the training labels in total. Its
validation part (early stopping; the linear head's C) is carved from those labels (by group,
stratified); a subset too small to hold one (see ``splits.validation_split``) trains ``epochs``
epochs without early stopping, or the linear head with C = 1, and records ``n_val: 0``. The test
split is only scored. Every (init, mode, fraction) is run once per ``finetune.seeds`` and reported
as mean, std and per-seed values.

With no labels at all (see ``stages/common/labelled.py``) the stage logs ``no labels: ...`` and
writes its declared outputs as explicit skips.
"""

from __future__ import annotations

import copy
import itertools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from domains import get_domain
from stages.common.cli import Dirs, main
from stages.common.device import pick_device, to_device
from stages.common.encoders import (
    build_encoder,
    build_projection_head,
    embed,
    load_encoder,
    load_head,
    save_encoder,
    state_to_bytes,
)
from stages.common.labelled import Labelled, NoLabels, load_labelled
from stages.common.schema import FinetuneCfg, Recipe
from stages.common.splits import stratified_fraction, validation_split
from stages.common.storage import atomic_dir, join, read_bytes, write_bytes, write_json
from stages.common.tasks import map_runs, tasks_wanted
from stages.finetune.core_tuning import core_loss
from stages.finetune.linear_head import fit_linear_head

INITS = ("pretrained", "random_init")
CPU = torch.device("cpu")


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.fc = nn.Linear(encoder.embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.encoder(x))


def _accuracy(logits: torch.Tensor, y: np.ndarray) -> float:
    return float((logits.argmax(1).cpu().numpy() == y).mean())


def _fit(
    forward,  # noqa: ANN001 - callable(batch_inputs) -> logits
    params: list[nn.Parameter],
    modules: list[nn.Module],
    inputs_train,  # noqa: ANN001 - indexable by a numpy index array
    y_train: np.ndarray,
    inputs_val,  # noqa: ANN001
    y_val: np.ndarray,
    cfg: FinetuneCfg,
    seed: int,
    step_loss: Callable[..., torch.Tensor] | None = None,
    device: torch.device = CPU,
) -> tuple[dict, int]:
    """Adam with early stopping on validation loss; returns the best state and its epoch.

    ``step_loss(inputs, idx, y)`` replaces the training cross-entropy (Core-tuning's regularised
    loss); validation always uses the plain cross-entropy of ``forward``. With an empty
    validation set it trains all ``cfg.epochs`` epochs and keeps the last state.
    """
    rng = np.random.default_rng(seed)
    optim = torch.optim.Adam(params, lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss()
    best = (float("inf"), None, 0)
    for epoch in range(cfg.epochs):
        for m in modules:
            m.train()
        order = rng.permutation(len(y_train))
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if len(idx) < 2 and len(order) >= 2:
                continue  # BatchNorm-free encoders would cope, but a 1-sample step is mostly noise
            y_batch = torch.from_numpy(y_train[idx]).to(device)
            if step_loss is not None:
                loss = step_loss(inputs_train, idx, y_batch)
            else:
                loss = loss_fn(forward(inputs_train, idx), y_batch)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        for m in modules:
            m.eval()
        if len(y_val) == 0:  # nothing to stop on: a fixed budget, the last state is the result
            best = (float("nan"), [copy.deepcopy(m.state_dict()) for m in modules], epoch)
            continue
        with torch.no_grad():
            val_loss = float(
                loss_fn(forward(inputs_val, np.arange(len(y_val))), torch.from_numpy(y_val).to(device))
            )
        if val_loss < best[0] - 1e-6:
            best = (val_loss, [copy.deepcopy(m.state_dict()) for m in modules], epoch)
        elif epoch - best[2] >= cfg.patience:
            break
    for m, state in zip(modules, best[1], strict=True):
        m.load_state_dict(state)
    return best, best[2]


def finetune_one(
    domain_name: str,
    encoder: nn.Module,
    data: Labelled,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    mode: str,
    cfg: FinetuneCfg,
    seed: int,
    head: nn.Module | None = None,
    device: torch.device = CPU,
) -> tuple[nn.Module, float, dict]:
    """Train one classifier; return (model, test accuracy, how it was fitted).

    The last is ``{"best_epoch": e}`` for ``full`` and ``core``; for ``linear`` the chosen
    regularisation ``linear_C``, its ``val_accuracy`` and the solver's ``lbfgs_iterations``.

    ``head`` is the projection head Core-tuning's contrastive term uses (mode ``core``; a fresh
    default head when None); it is trained along but not part of the returned classifier.
    Trains on ``device``; the returned classifier stays there.
    """
    if mode not in ("linear", "full", "core"):
        raise ValueError(f"unknown finetune mode {mode!r}")
    torch.manual_seed(seed)
    model = Classifier(encoder, len(data.classes)).to(device)
    if mode == "linear":
        acc, info = _fit_linear_head(model, domain_name, data, train_idx, val_idx, cfg, seed)
        return model, acc, info
    if mode == "core" and head is None:
        head = build_projection_head(encoder.embedding_dim)
    epoch = _fit_end_to_end(
        model, domain_name, data, train_idx, val_idx, cfg, seed, head if mode == "core" else None, device
    )
    return model, _test_accuracy(model, domain_name, data, device), {"best_epoch": epoch}


def _fit_linear_head(
    model: Classifier,
    domain_name: str,
    data: Labelled,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: FinetuneCfg,
    seed: int,
) -> tuple[float, dict]:
    """Frozen encoder: embed once, fit ``model.fc`` by convex logistic regression (``linear_head``);
    returns (test accuracy, the fit's chosen C, validation accuracy and L-BFGS iterations)."""
    feats = embed(model.encoder, domain_name, data.train.xs)
    fit = fit_linear_head(feats, data.train.y, train_idx, val_idx, len(data.classes), cfg.linear_c_grid, seed)
    fit.copy_into(model.fc)
    test_feats = torch.from_numpy(embed(model.encoder, domain_name, data.test.xs)).to(model.fc.weight.device)
    with torch.no_grad():
        acc = _accuracy(model.fc(test_feats), data.test.y)
    return acc, {"linear_C": fit.C, "val_accuracy": fit.val_accuracy, "lbfgs_iterations": fit.n_iter}


def _fit_end_to_end(
    model: Classifier,
    domain_name: str,
    data: Labelled,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: FinetuneCfg,
    seed: int,
    head: nn.Module | None,
    device: torch.device,
) -> int:
    """Full fine-tuning (Core-tuning when ``head`` is given); returns the best epoch."""
    domain = get_domain(domain_name)
    tr = data.train

    def fwd(inputs: list[np.ndarray], idx: np.ndarray) -> torch.Tensor:
        return model(to_device(domain.collate([inputs[i] for i in idx]), device))

    modules: list[nn.Module] = [model]
    step_loss = None
    if head is not None:
        head = head.to(device)
        modules.append(head)
        step_loss = _core_step_loss(model, head, domain_name, len(data.classes), cfg, seed, device)
    _, epoch = _fit(
        fwd,
        [p for m in modules for p in m.parameters()],
        modules,
        [tr.xs[i] for i in train_idx],
        tr.y[train_idx],
        [tr.xs[i] for i in val_idx],
        tr.y[val_idx],
        cfg,
        seed,
        step_loss,
        device,
    )
    model.eval()
    return epoch


def _core_step_loss(
    model: Classifier,
    head: nn.Module,
    domain_name: str,
    n_classes: int,
    cfg: FinetuneCfg,
    seed: int,
    device: torch.device,
) -> Callable[[list[np.ndarray], np.ndarray, torch.Tensor], torch.Tensor]:
    """Core-tuning's training loss for :func:`_fit`: cross-entropy plus eta * SupCon on the head."""
    domain = get_domain(domain_name)
    mix_rng = np.random.default_rng(seed)

    def step_loss(inputs: list[np.ndarray], idx: np.ndarray, y: torch.Tensor) -> torch.Tensor:
        # Mixing happens on encoder features, so any batch the domain collates works.
        h = model.encoder(to_device(domain.collate([inputs[i] for i in idx]), device))
        loss, _ = core_loss(
            h, y, model.fc, head, n_classes, cfg.core_eta, cfg.core_temperature, cfg.core_mixup_alpha, mix_rng
        )
        return loss

    return step_loss


@torch.no_grad()
def _test_accuracy(
    model: Classifier, domain_name: str, data: Labelled, device: torch.device, batch: int = 64
) -> float:
    """Accuracy of ``model`` (in eval mode) on the test split, batched through the domain's collate."""
    domain = get_domain(domain_name)
    xs = data.test.xs
    logits = torch.cat(
        [model(to_device(domain.collate(xs[i : i + batch]), device)) for i in range(0, len(xs), batch)]
    )
    return _accuracy(logits, data.test.y)


def run(recipe: Recipe, dirs: Dirs) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = recipe.finetune
    if "classification" not in get_domain(recipe.domain).tasks:
        # e.g. RL state encoders: their supervised baseline lives in the domain's own evaluation.
        print(f"finetune: domain {recipe.domain!r} has no classification task; nothing to fine-tune")
        _write_skipped(dirs, f"domain {recipe.domain!r} has no classification task", {})
        return
    try:
        data = load_labelled(dirs.data, recipe.evaluate.probe_rows)
    except NoLabels as e:
        print(f"finetune: no labels: {e}; fine-tuning skipped", flush=True)
        _write_skipped(dirs, f"no labels: {e}", {"skipped": f"no labels: {e}"})
        return
    print(f"finetune: {data.describe()}", flush=True)
    pretrained_dir = join(dirs.models, "pretrained")
    enc_config = json.loads(read_bytes(join(pretrained_dir, "config.json")))
    shared = _Shared(recipe, data, enc_config, *_pretrained(recipe, pretrained_dir))
    plan = list(itertools.product(cfg.seeds, cfg.fractions, INITS, cfg.modes))
    budgets = {  # one label budget per seed and fraction, shared by all runs
        (seed, fraction): label_budget(data, fraction, cfg.val_fraction, seed)
        for seed, fraction in dict.fromkeys((seed, fraction) for seed, fraction, _, _ in plan)
    }
    items = [
        _Run(seed, fraction, init, mode, *budgets[seed, fraction], keep=_keeps_model(cfg, seed, fraction))
        for seed, fraction, init, mode in plan
    ]

    def log(_: int, out: tuple[dict, Classifier | None]) -> None:
        r = out[0]
        print(
            f"finetune: {r['tag']}: {r['n_fit']} fit + {r['n_val']} validation labels, "
            f"test accuracy {r['test_accuracy']:.4f}",
            flush=True,
        )

    tasks = tasks_wanted(recipe.finetune.ray_tasks, recipe.scale) and len(items) > 1
    print(f"finetune: {len(items)} runs" + (", as Ray tasks of one CPU each" if tasks else ""), flush=True)
    outs = map_runs(
        _one_run,
        shared,
        items,
        ray_cfg=recipe.ray,
        enabled=tasks,
        desc="finetune: runs",
        on_done=log,
        cost=_cost,
    )
    results = [r for r, _ in outs]
    for r, model in outs:
        if model is not None:
            _save_finetuned(dirs, model, enc_config, data.classes, r["init"], r["mode"])
    summary = summarise(results)
    if data.source is not None:  # which training rows the runs drew their labels from
        summary["probe_rows"] = data.source.metrics()
    write_json(join(dirs.metrics, "finetune.json"), summary)
    write_json(join(dirs.metrics, "label_efficiency.json"), _curve(results))


@dataclass(frozen=True)
class _Shared:
    """What every fine-tune run reads: sent to Ray's object store once when runs are tasks."""

    recipe: Recipe
    data: Labelled
    enc_config: dict
    encoder: nn.Module  # the pretrained encoder, loaded once; each run trains a copy
    head: nn.Module | None  # its projection head, when saved (Core-tuning starts from it)


@dataclass(frozen=True)
class _Run:
    seed: int
    fraction: float
    init: str
    mode: str
    subset: np.ndarray
    fit_idx: np.ndarray
    val_idx: np.ndarray
    keep: bool  # return the trained classifier (the stage saves one per init and mode)


def _pretrained(recipe: Recipe, pretrained_dir: str) -> tuple[nn.Module, nn.Module | None]:
    head = load_head(pretrained_dir) if "core" in recipe.finetune.modes else None
    if "core" in recipe.finetune.modes and head is None:
        print("finetune: no pretrained projection head saved; core uses a fresh one")
    return load_encoder(pretrained_dir), head


def _cost(run: _Run) -> float:
    """Relative run time, for starting tasks longest first: labels seen, and a frozen encoder's linear
    head (features embedded once) far cheaper than training the encoder."""
    return len(run.fit_idx) * (1.0 if run.mode == "linear" else 10.0)


def _keeps_model(cfg: FinetuneCfg, seed: int, fraction: float) -> bool:
    return fraction == max(cfg.fractions) and seed == cfg.seeds[0]


def _one_run(shared: _Shared, run: _Run) -> tuple[dict, Classifier | None]:
    """One fine-tune: its result row, and the trained classifier (on the CPU) when ``run.keep``."""
    recipe, cfg = shared.recipe, shared.recipe.finetune
    device = pick_device(recipe.ray.use_gpu)
    encoder, head = _starting_point(shared, run)
    model, acc, fitted = finetune_one(
        recipe.domain, encoder, shared.data, run.fit_idx, run.val_idx, run.mode, cfg, run.seed, head, device
    )
    row = {
        "init": run.init,
        "mode": run.mode,
        "fraction": run.fraction,
        "seed": run.seed,
        "labels": int(len(run.subset)),
        "n_fit": int(len(run.fit_idx)),
        "n_val": int(len(run.val_idx)),
        "early_stopping": bool(len(run.val_idx)),
        "test_accuracy": acc,
        **fitted,
        "tag": f"{run.init}-{run.mode}-{run.fraction:g}-seed{run.seed}",
    }
    return row, (model.cpu() if run.keep else None)


def _starting_point(shared: _Shared, run: _Run) -> tuple[nn.Module, nn.Module | None]:
    """The encoder a run starts from (a copy of the pretrained one, or random init seeded by
    ``run.seed``) and, for Core-tuning, the projection head (the pretrained one when saved, else a fresh
    one of its shape)."""
    head = None
    if run.init == "pretrained":
        encoder = copy.deepcopy(shared.encoder)
        if run.mode == "core" and shared.head is not None:
            head = copy.deepcopy(shared.head)
    else:
        torch.manual_seed(run.seed)
        encoder = build_encoder(shared.recipe.domain, shared.enc_config["encoder"])
    if run.mode == "core" and head is None:
        head = build_projection_head(encoder.embedding_dim, shared.enc_config.get("head"))
    return encoder, head


def _save_finetuned(
    dirs: Dirs, model: Classifier, enc_config: dict, classes: list[str], init: str, mode: str
) -> None:
    """``models/<recipe>/finetuned/<init>-<mode>/``: the encoder, its config and the linear head."""
    model = model.cpu()  # weights are written from host memory
    out = join(dirs.models, "finetuned", f"{init}-{mode}")
    save_encoder(out, model.encoder, {**enc_config, "classes": classes, "mode": mode, "init": init})
    write_bytes(join(out, "head.safetensors"), state_to_bytes(model.fc))


def label_budget(
    data: Labelled, fraction: float, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(subset, fit, val)`` indices into ``data.train`` for one run at ``fraction`` of the labels.

    ``subset`` is the stratified ``fraction`` of all labelled training rows; ``fit`` and ``val``
    partition it (``val`` may be empty, see ``splits.validation_split``).
    """
    sub = stratified_fraction(data.train.y, fraction, seed)
    fit, val = validation_split(data.train.groups[sub], data.train.y[sub], val_fraction, seed)
    return sub, sub[fit], sub[val]


def _write_skipped(dirs: Dirs, reason: str, metrics: dict) -> None:
    """DVC still expects the stage's declared outputs: explicit, empty results, never missing ones."""
    with atomic_dir(join(dirs.models, "finetuned")) as tmp:
        write_json(join(tmp, "skipped.json"), {"reason": reason})
    write_json(join(dirs.metrics, "finetune.json"), metrics)
    write_json(join(dirs.metrics, "label_efficiency.json"), [])


def _spread(values: list[float]) -> tuple[float, float]:
    """Mean and population std (0 for one seed) of per-seed figures."""
    return float(np.mean(values)), float(np.std(values))


def summarise(results: list[dict]) -> dict:
    """``{init: {mode: {"1%": mean, "1%_std": std, "1%_seeds": [...]}}, "seeds": [...], "runs": [...]}``.

    Flat numeric keys are what `dvc metrics show`/`diff` render as columns (the mean and its std
    side by side); the per-seed lists and ``runs`` (one record per seed, with the labels used for
    fitting, ``n_fit``, and for validation, ``n_val``) are kept for the report and for readers.
    """
    out: dict = {}
    for r in results:
        key = f"{r['fraction'] * 100:g}%"
        out.setdefault(r["init"], {}).setdefault(r["mode"], {}).setdefault(key, []).append(r["test_accuracy"])
    summary: dict = {}
    for init, modes in out.items():
        for mode, fractions in modes.items():
            cell = summary.setdefault(init, {}).setdefault(mode, {})
            for key, values in fractions.items():
                cell[key], cell[f"{key}_std"] = _spread(values)
                cell[f"{key}_seeds"] = [float(v) for v in values]
    summary["seeds"] = sorted({int(r["seed"]) for r in results})
    summary["runs"] = [{k: v for k, v in r.items() if k != "tag"} for r in results]
    return summary


def _curve(results: list[dict]) -> list[dict]:
    """One row per fraction for `dvc plots`: x = fraction, ``<init>_<mode>`` the mean over seeds
    and ``<init>_<mode>_std`` its spread."""
    rows: dict[float, dict[str, list[float]]] = {}
    for r in results:
        rows.setdefault(r["fraction"], {}).setdefault(f"{r['init']}_{r['mode']}", []).append(
            r["test_accuracy"]
        )
    curve = []
    for fraction, series in sorted(rows.items()):
        row: dict = {"fraction": fraction}
        for name, values in series.items():
            row[name], row[f"{name}_std"] = _spread(values)
        curve.append(row)
    return curve


if __name__ == "__main__":
    sys.exit(main("finetune", run))
