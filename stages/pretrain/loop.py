"""The contrastive pretraining loop: one plain function, run by Ray Train workers or in-process.

Under Ray Train each worker reads its Ray Data shard (``get_dataset_shard``), the model is wrapped in
DDP (``prepare_model``) and the loss gathers negatives from every worker with gradients. In-process
(``run_in_process``) the same code runs on a list of samples, for unit tests and for measuring
Ray's overhead. Every worker runs exactly ``steps_per_epoch`` steps per epoch — checked, because a
gather-based loss hangs or silently mismatches when one worker runs short.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from domains import get_domain
from domains.base import (
    Domain,
    LossCapabilities,
    SteppedObjective,
    TrainableObjective,
    ViewPolicy,
    check_objective,
)
from stages.common import diagnostics
from stages.common.bank import draw_views
from stages.common.device import autocast, autocast_dtype, to_device
from stages.common.heads import EncoderWithHead, build_head
from stages.common.losses import ModelLoss, build_loss, sync_loss_gradients
from stages.common.progress import progress
from stages.common.schema import HeadCfg, PretrainCfg, ViewsCfg
from stages.pretrain.checkpoint import (
    CKPT_AVERAGE,
    has_average,
    load_checkpoint,
    read_state,
    read_weights,
    save_checkpoint,
)
from stages.pretrain.shards import ShardReader, list_batches
from stages.pretrain.stream import ViewMaker, decode_views, ingest_options, stream_name, view_stream


def check_views(
    domain: Domain,
    loss_name: str,
    loss_fn: torch.nn.Module | None,
    views: ViewsCfg,
    policy: ViewPolicy,
    sample: np.ndarray | None = None,
) -> None:
    """Raise a one-line ``ValueError`` naming the key when the views cannot be used as asked.

    More than two views or small crops need a registry loss that takes view pairs (or, like SwAV,
    all views at once); domain objectives make their own two views and momentum losses run their
    target on exactly two. With a ``sample``, also checks that the domain has the small-crop hook.
    """
    if views.materialize and loss_fn is None:
        raise ValueError(
            f"views.materialize={views.materialize}: the domain objective {loss_name!r} makes its own "
            "views (use views.materialize=0)"
        )
    if views.n_views == 2 and views.small_crops == 0:
        return
    key = "views.n_views" if views.n_views != 2 else "views.small_crops"
    value = views.n_views if views.n_views != 2 else views.small_crops
    if loss_fn is None:
        raise ValueError(
            f"{key}={value}: the domain objective {loss_name!r} makes its own two views "
            "(use views.n_views=2 and views.small_crops=0)"
        )
    if LossCapabilities.of(loss_fn).needs_inputs:
        raise ValueError(
            f"{key}={value}: loss {loss_name!r} runs its momentum target on exactly two views "
            "(use views.n_views=2 and views.small_crops=0)"
        )
    if views.small_crops and sample is not None:
        small_crops(domain, [sample], np.random.default_rng(0), policy, views)


def small_crops(
    domain: Domain, batch: list[np.ndarray], rng: np.random.Generator, policy: ViewPolicy, views: ViewsCfg
) -> list[np.ndarray]:
    """``views.small_crops`` rounds of the domain's small-crop hook over ``batch``, concatenated."""
    out: list[np.ndarray] = []
    for _ in range(views.small_crops):
        crops = domain.small_crops(batch, rng, policy, views.small_crop_scale)
        if crops is None:
            raise ValueError(
                f"views.small_crops={views.small_crops}: the {domain.name!r} domain has no small-crop "
                "hook (Domain.small_crops); set views.small_crops=0"
            )
        out += crops
    return out


def multiview_loss(
    loss_fn: torch.nn.Module, z: torch.Tensor, n: int, n_global: int, extra: dict[str, Any] | None = None
) -> torch.Tensor:
    """The loss over ``z``'s stacked views of ``n`` rows each: ``n_global`` global views, then crops.

    A loss that takes every view at once (``multi_view``, SwAV) gets them all; any other loss is
    averaged over the view pairs: every unordered pair of global views (SimCLR's multi-view
    setting) and every (small crop, global view) pair, so crops are only ever matched to global
    views. With two views this is exactly ``loss_fn(z0, z1)``.
    """
    views = list(z.split(n))
    if LossCapabilities.of(loss_fn).multi_view:
        return loss_fn(*views, n_global=n_global, **(extra or {}))
    pairs = [(i, j) for i in range(n_global) for j in range(i + 1, n_global)]
    pairs += [(c, g) for c in range(n_global, len(views)) for g in range(n_global)]
    if len(pairs) == 1:
        return loss_fn(views[0], views[1], **(extra or {}))
    return torch.stack([loss_fn(views[a], views[b], **(extra or {})) for a, b in pairs]).mean()


@torch.no_grad()
def _embed(
    encoder: torch.nn.Module, domain: Domain, xs: list[np.ndarray], batch_size: int = 64
) -> torch.Tensor:
    """fp32 features (before the head) of ``xs``, in eval mode, in chunks of ``batch_size``."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        return torch.cat(
            [
                encoder(to_device(domain.collate(xs[i : i + batch_size]), device)).float()
                for i in range(0, len(xs), batch_size)
            ]
        )
    finally:
        encoder.train(was_training)


@torch.no_grad()
def online_knn(encoder: torch.nn.Module, domain: Domain, data: dict[str, Any], batch_size: int = 64) -> float:
    """kNN accuracy of the encoder's features (before the head) on a small labelled bank/query split."""
    return diagnostics.knn_accuracy(
        _embed(encoder, domain, list(data["bank_x"]), batch_size),
        data["bank_y"],
        _embed(encoder, domain, list(data["query_x"]), batch_size),
        data["query_y"],
    )


def diagnostic_views(
    domain: Domain, sample: list[Any], policy: ViewPolicy, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The fixed sample's rows and two seeded augmented views of each (drawn once, reused every epoch).

    A row may be a bank of materialised views (in-process with ``views.materialize``): then its
    first view stands for the row and two distinct views are drawn from the bank.
    """
    rng = np.random.default_rng([seed, 1024])
    if sample and isinstance(sample[0], list):
        v0, v1 = draw_views(sample, 2, rng)
        return [b[0] for b in sample], v0, v1
    views = [[domain.augment(x, rng, policy) for x in sample] for _ in range(2)]
    return list(sample), views[0], views[1]


def sample_diagnostics(
    encoder: torch.nn.Module, domain: Domain, views: tuple[list, list, list], batch_size: int = 64
) -> dict[str, float | int]:
    """Alignment, uniformity, RankMe and the collapse flag on the fixed sample (``diagnostic_views``)."""
    return diagnostics.sample_metrics(*(_embed(encoder, domain, v, batch_size) for v in views))


def _checkpoint_epoch(epoch: int, cfg: PretrainCfg) -> bool:
    return (epoch + 1) % cfg.checkpoint_every == 0 or epoch == cfg.epochs - 1


def build_model(config: dict[str, Any]) -> EncoderWithHead:
    torch.manual_seed(config["pretrain"]["seed"])
    domain = get_domain(config["domain"])
    encoder = domain.build_encoder(config["encoder"])
    head_cfg = HeadCfg(**config["pretrain"]["head"])
    objective = domain.objectives().get(config["pretrain"]["loss"])
    if objective is not None:
        obj = check_objective(config["pretrain"]["loss"], objective(**config["pretrain"]["loss_options"]))
        if isinstance(obj, torch.nn.Module) and isinstance(obj, TrainableObjective):
            # An objective with parameters (CURL's bilinear W, an EMA target) is the model's head, so
            # the optimiser, DDP and checkpoints cover it; bind() sizes it for the encoder.
            obj.bind(encoder)
            return EncoderWithHead(encoder, obj)
        head_cfg = HeadCfg(type="none")  # dense domain objectives work on the encoder's own output
    head = build_head(encoder.embedding_dim, head_cfg)
    return EncoderWithHead(encoder, head)


#: device types torch's SyncBatchNorm synchronises on (torch/nn/modules/batchnorm.py raises on others)
SYNC_BATCHNORM_DEVICES = ("cuda", "xpu", "hpu")


def sync_batchnorm(cfg: PretrainCfg, device: torch.device, world_size: int) -> bool:
    """Whether the model's BatchNorm layers become ``torch.nn.SyncBatchNorm`` for this run.

    Under DDP each worker's BatchNorm otherwise normalises its own slice of the batch, so the
    statistics (and the in-batch shortcut they offer a contrastive loss) depend on how many workers
    split it; SimCLR aggregates them over all devices ("global BN"), and solo-learn and lightly turn
    Lightning's ``sync_batchnorm`` on for multi-device runs. torch runs SyncBatchNorm on accelerators
    only, so on the CPU every worker keeps its own statistics whatever ``pretrain.sync_batchnorm``
    says. The layers keep BatchNorm's parameter and buffer names: checkpoints and the exported
    encoder load into the plain model."""
    return cfg.sync_batchnorm and world_size > 1 and device.type in SYNC_BATCHNORM_DEVICES


def build_training(
    config: dict[str, Any], device: torch.device
) -> tuple[EncoderWithHead, torch.nn.Module | None, torch.optim.Optimizer]:
    """The model, the registry loss (None for a domain objective) and the optimiser, all on ``device``.

    Everything moves to ``device`` *before* the optimiser exists and before a checkpoint is restored
    into it: ``Optimizer.load_state_dict`` puts the state on its parameters' device, so restoring into
    a CPU model that ``prepare_model`` moves afterwards would leave Adam's moments on the CPU.
    """
    cfg = PretrainCfg(**config["pretrain"])
    domain = get_domain(config["domain"])
    model = build_model(config)
    # A registry loss (not a domain objective) is built before the optimiser: a loss that owns
    # modules (BYOL's predictor, SwAV's prototypes) attaches to the model and joins the optimiser.
    loss_fn = (
        None if cfg.loss in domain.objectives() else build_loss(cfg.loss, cfg.temperature, cfg.loss_options)
    )
    sync = sync_batchnorm(cfg, device, int(config.get("world_size", 1)))
    if sync:  # before the momentum target copies the model and the optimiser takes its parameters
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if isinstance(loss_fn, ModelLoss):
        loss_fn.attach(model)  # momentum targets are copies of the model: made before the move
    if sync and loss_fn is not None:  # the loss's own modules, made by attach (BYOL's predictor)
        loss_fn = torch.nn.SyncBatchNorm.convert_sync_batchnorm(loss_fn)
    model.to(device)
    if loss_fn is not None:
        loss_fn.to(device)
    params = list(model.parameters())
    if loss_fn is not None:
        params += [p for p in loss_fn.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return model, loss_fn, optim


def weight_average(model: torch.nn.Module) -> AveragedModel:
    """``pretrain.weight_average: swa``: a running uniform average of ``model``'s weights (a copy on
    its device, buffers included) that already counts the current weights once, as TS2Vec's does.
    The one constructor for training, export and the benches, so their state dicts always agree."""
    average = AveragedModel(model, use_buffers=True)
    average.update_parameters(model)
    return average


class _Live:
    """dvclive on rank 0 only; replays resumed history so the curves stay whole after a resume."""

    def __init__(self, directory: str | None, history: list[dict]) -> None:
        self.live = None
        if directory:
            from dvclive import Live

            self.live = Live(directory, save_dvc_exp=False, dvcyaml=None, report=None)
            for row in history:
                self.log(row)

    def log(self, row: dict) -> None:
        if self.live is None:
            return
        self.live.step = row["epoch"]
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)):
                self.live.log_metric(k, v)
        self.live.next_step()

    def end(self) -> None:
        if self.live is not None:
            self.live.end()


@dataclass
class Trainer:
    """What one worker's training holds between epochs (built by :func:`setup`)."""

    config: dict[str, Any]
    cfg: PretrainCfg
    domain: Domain
    policy: ViewPolicy
    views: ViewsCfg
    local_batch: int
    steps: int
    rank: int
    in_ray: bool
    device: torch.device
    model: EncoderWithHead
    net: torch.nn.Module
    loss_fn: torch.nn.Module | None
    optim: torch.optim.Optimizer
    objective: Any
    #: the running weight average (``pretrain.weight_average: swa``), else None
    average: AveragedModel | None = None
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def exported(self) -> EncoderWithHead:
        """The model the stage exports and diagnoses: the weight average when there is one."""
        return self.average.module if self.average is not None else self.model


@dataclass
class StepInput:
    """One step's data: raw samples (or banks) whose views the loop makes, or ready views."""

    samples: list | None = None
    views: list[list[np.ndarray]] | None = None


def setup(config: dict[str, Any], xs: list[np.ndarray] | None) -> Trainer:
    """Model, loss and optimiser on this worker's device, resumed from the run's latest checkpoint."""
    in_ray = xs is None
    cfg = PretrainCfg(**config["pretrain"])
    torch.set_num_threads(cfg.threads_per_worker)
    domain = get_domain(config["domain"])
    policy = ViewPolicy(**config["policy"])
    # views.n_views / small_crops / small_crop_scale; absent: SimCLR's two global views
    views_cfg = ViewsCfg(**config.get("views", {}))
    rank = 0
    if in_ray:
        import ray.train
        import ray.train.torch

        rank = ray.train.get_context().get_world_rank()
    # Ray Train's device for this worker (a GPU with ray.use_gpu); in-process, config["device"]
    device = ray.train.torch.get_device() if in_ray else torch.device(config.get("device", "cpu"))
    model, loss_fn, optim = build_training(config, device)
    check_views(domain, cfg.loss, loss_fn, views_cfg, policy, xs[0] if xs else None)
    if cfg.precision == "bf16" and autocast_dtype(cfg.precision, device) is None and rank == 0:
        print(
            f"pretrain: precision=bf16 runs as fp32 on {device.type} (bf16 autocasts on CUDA only)",
            flush=True,
        )
    average = weight_average(model) if cfg.weight_average == "swa" else None
    start_epoch, history = 0, []
    if in_ray and (ckpt := ray.train.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            state = load_checkpoint(d, model, optim, loss_fn, average)
        start_epoch, history = state["epoch"] + 1, state["history"]
        if rank == 0:
            print(f"pretrain: resuming from checkpoint at epoch {state['epoch']}", flush=True)
    net = ray.train.torch.prepare_model(model) if in_ray else model
    objective = domain.objectives().get(cfg.loss)
    if objective is not None:
        own = isinstance(objective, type) and isinstance(model.head, objective)
        objective = check_objective(cfg.loss, model.head if own else objective(**cfg.loss_options))
    return Trainer(
        config=config,
        cfg=cfg,
        domain=domain,
        policy=policy,
        views=views_cfg,
        local_batch=int(config["local_batch"]),
        steps=int(config["steps_per_epoch"]),
        rank=rank,
        in_ray=in_ray,
        device=device,
        model=model,
        net=net,
        loss_fn=loss_fn,
        optim=optim,
        objective=objective,
        average=average,
        start_epoch=start_epoch,
        history=history,
    )


class StreamedViews:
    """Ready views from Ray Data (stages/pretrain/stream.py): one iterator over the whole run, cut
    into epochs of ``steps`` batches. Decoding happens here, so it counts as waiting for data."""

    def __init__(self, iterator: Any, t: Trainer, prefetch_batches: int) -> None:  # noqa: ANN401
        self.batches = iter(
            iterator.iter_batches(
                batch_size=t.local_batch, batch_format="numpy", prefetch_batches=prefetch_batches
            )
        )
        self.n_views = t.views.n_views

    def epoch(self, epoch: int, steps: int) -> Iterator[StepInput]:
        for _ in range(steps):
            batch = next(self.batches, None)
            # a stream started before the checkpoint this worker resumed from: skip what it trained on
            while batch is not None and int(batch["epoch"][0]) < epoch:
                batch = next(self.batches, None)
            if batch is None or not (batch["epoch"] == epoch).all():
                raise RuntimeError(f"the view stream has no full batch for epoch {epoch}")
            yield StepInput(views=decode_views(batch, self.n_views))


def batch_source(
    t: Trainer,
    xs: list[np.ndarray] | None,
    stream: Any = None,  # noqa: ANN401
) -> Callable[[int], Iterator[StepInput]]:
    """Where each epoch's batches come from: streamed views (``config["view_stream"]``), this
    worker's Ray Data shard, or in-process the list ``xs``."""
    spec = t.config.get("view_stream")
    if spec:
        if stream is None:
            import ray.train

            stream = ray.train.get_dataset_shard(stream_name(t.rank))
        views = StreamedViews(stream, t, spec["prefetch_batches"])
        return lambda epoch: views.epoch(epoch, t.steps)
    if t.in_ray:
        layout = t.config.get("shard_layout", "split")
        reader = ShardReader(
            t.local_batch, t.cfg.shard_cache_mb, t.rank, int(t.config.get("world_size", 1)), layout
        )
        return lambda epoch: (StepInput(b) for b in reader.batches(epoch, t.cfg.seed))
    return lambda epoch: (StepInput(b) for b in list_batches(xs, t.local_batch, epoch, t.cfg.seed))


def make_views(t: Trainer, batch: list, rng: np.random.Generator) -> list[list[np.ndarray]]:
    """The loop mode's views of ``batch``: ``n_views`` lists of one view per row."""
    if t.views.materialize:
        return draw_views(batch, t.views.n_views, rng)  # each row is its bank of materialised views
    return [[t.domain.augment(x, rng, t.policy) for x in batch] for _ in range(t.views.n_views)]


def train_step(t: Trainer, step: StepInput, rng: np.random.Generator) -> tuple[float, float]:
    """One optimiser step; returns (loss, seconds spent making views inside it)."""
    t0 = time.perf_counter()
    if t.objective is None:
        views = step.views if step.views is not None else make_views(t, step.samples, rng)
        crops = small_crops(t.domain, step.samples, rng, t.policy, t.views) if t.views.small_crops else None
        view_s = time.perf_counter() - t0
        # one forward over all views: DDP allows a single forward per backward
        inputs = t.domain.collate([v for view in views for v in view])
        if crops is not None:
            # small crops are collated apart (another extent) but still go through the same
            # forward: the model encodes each resolution, then heads them together
            inputs = [inputs, t.domain.collate(crops)]
        # on the model's device: the model and the momentum target below both read them
        inputs = to_device(inputs, t.device)
        with autocast(t.cfg.precision, t.device):
            _, z = t.net(inputs)
            # momentum losses (BYOL, MoCo) run their target network on the same inputs
            extra = {"inputs": inputs} if LossCapabilities.of(t.loss_fn).needs_inputs else {}
            loss = multiview_loss(t.loss_fn, z, t.local_batch, t.views.n_views, extra)
    else:
        # a domain objective makes its own views and reads per-step representations
        v1, v2, ctx = t.objective.make_views(step.samples, rng)
        view_s = time.perf_counter() - t0
        with autocast(t.cfg.precision, t.device):
            reps, _ = t.net(to_device(t.domain.collate(v1 + v2), t.device), timestamps=True)
            loss = t.objective.loss(reps[: t.local_batch], reps[t.local_batch :], v1[0].shape[-1], ctx)
    t.optim.zero_grad(set_to_none=True)
    loss.backward()
    if t.loss_fn is not None:
        sync_loss_gradients(t.loss_fn)  # DDP averages the model's gradients, not the loss's
    t.optim.step()
    if isinstance(t.loss_fn, ModelLoss):
        t.loss_fn.on_step(t.model)
    if isinstance(t.objective, SteppedObjective):
        t.objective.after_step(t.model.encoder)  # e.g. a momentum target's EMA update
    if t.average is not None:
        t.average.update_parameters(t.model)
    return loss.item(), view_s


def run_epoch(t: Trainer, batches: Iterator[StepInput], epoch: int) -> dict[str, Any]:
    """``t.steps`` steps; the epoch's loss and where its time went.

    ``data_wait_fraction``: time blocked waiting for the next batch (reading the shard, or waiting
    for the view stream); ``view_fraction``: time the trainer spent making views itself.
    """
    t.net.train()
    # Views are drawn from a per-epoch stream, so a run resumed at epoch N sees the same views
    # from N on as an uninterrupted run would.
    rng = np.random.default_rng([t.cfg.seed, t.rank, epoch])
    losses: list[float] = []
    wait = views = 0.0
    start = mark = time.perf_counter()
    for step in batches:
        wait += time.perf_counter() - mark
        loss, view_s = train_step(t, step, rng)
        losses.append(loss)
        views += view_s
        if len(losses) == t.steps:
            break
        mark = time.perf_counter()
    total = time.perf_counter() - start
    if len(losses) != t.steps:
        raise RuntimeError(
            f"worker {t.rank} ran {len(losses)} steps in epoch {epoch}, expected {t.steps}: shards are unequal"
        )
    return {
        "epoch": epoch,
        "loss": float(np.mean(losses)),
        "step_time_s": total / t.steps,
        "data_wait_fraction": wait / max(total, 1e-12),
        "view_fraction": views / max(total, 1e-12),
    }


@dataclass
class _Diagnostics:
    """The fixed diagnostic sample (stages.common.diagnostics) and its views, made once."""

    sample: list | None
    views: tuple | None = None


def epoch_diagnostics(t: Trainer, epoch: int, diag: _Diagnostics) -> dict[str, Any]:
    """Rank 0, checkpoint epochs: alignment, uniformity, RankMe, collapse and online kNN."""
    if t.rank != 0 or not _checkpoint_epoch(epoch, t.cfg):
        return {}
    out: dict[str, Any] = {}
    if diag.sample:
        # on the fixed sample, never on the last batch (a batch bounds RankMe by its row count);
        # fp32, outside autocast (SVD has no bf16 kernel)
        if diag.views is None:
            diag.views = diagnostic_views(t.domain, diag.sample, t.policy, t.cfg.seed)
        out.update(sample_diagnostics(t.exported.encoder, t.domain, diag.views))
    if t.config.get("online_knn"):
        # solo-learn's online kNN: features of the labelled bank/queries at checkpoint epochs
        out["online_knn"] = online_knn(t.exported.encoder, t.domain, t.config["online_knn"])
    if out.get("collapsed"):
        print(f"pretrain: WARNING: representation collapse detected at epoch {epoch}", flush=True)
    return out


def train(
    config: dict[str, Any],
    xs: list[np.ndarray] | None = None,
    stream: Any = None,  # noqa: ANN401
) -> tuple[EncoderWithHead, list[dict]]:
    """Train; with ``xs`` in-process, else inside a Ray Train worker. Returns (model, history).

    ``stream``: in-process, a Ray Data iterator of streamed views (Ray Train workers get theirs
    from ``get_dataset_shard``)."""
    t = setup(config, xs)
    batches = batch_source(t, xs, stream)
    # the fixed diagnostic sample: from the stage's config, or drawn from the in-process rows
    sample = config.get("diagnostic_sample")
    if sample is None and xs is not None:
        sample = [xs[i] for i in diagnostics.sample_indices(len(xs), t.cfg.diagnostic_rows, t.cfg.seed)]
    diag = _Diagnostics(sample)
    live = _Live(config.get("live_dir") if t.rank == 0 else None, t.history)
    epochs = range(t.start_epoch, t.cfg.epochs)
    if t.rank == 0:  # in DVC logs one line per epoch (per 1 % past 100 epochs); a bar on a terminal
        every = max(99.9 / t.cfg.epochs, 1.0)  # 99.9: one bucket per epoch despite rounding
        epochs = progress(
            epochs, "pretrain: epochs", total=t.cfg.epochs, initial=t.start_epoch, every_percent=every
        )
    for epoch in epochs:
        row = run_epoch(t, batches(epoch), epoch)
        row.update(epoch_diagnostics(t, epoch, diag))
        t.history.append(row)
        live.log(row)
        if t.in_ray:
            _report(t, row, epoch)
    live.end()
    return t.exported, t.history


def _report(t: Trainer, row: dict, epoch: int) -> None:
    """Report to Ray Train at checkpoint epochs only (every worker on the same schedule).

    A report waits for the controller's next poll (up to ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``),
    so reporting every epoch would dominate short epochs; per-epoch curves go to dvclive instead.
    """
    import ray.train

    if not _checkpoint_epoch(epoch, t.cfg):
        return
    if t.rank == 0:
        # rank 0 writes from a fresh temporary directory; the others report metrics only
        with tempfile.TemporaryDirectory() as d:
            state = {"epoch": epoch, "history": t.history}
            save_checkpoint(d, t.model, t.optim, state, t.loss_fn, t.average)
            ray.train.report(row, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(row)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point."""
    train(config)


def run_in_process(
    config: dict[str, Any], xs: list[np.ndarray], maker: type[ViewMaker] = ViewMaker
) -> tuple[EncoderWithHead, list[dict]]:
    """The same loop without Ray Train (world size 1), on a list of samples.

    With ``config["view_stream"]`` the views come from a Ray Data stream as under Ray Train (a Ray
    session must be up); ``maker`` is its view-making actor class.
    """
    stream = None
    if config.get("view_stream"):
        import ray

        ds = view_stream(ray.put(list(xs)), len(xs), config, rank=0, start_epoch=0, maker=maker)
        ds.context.execution_options = ingest_options()
        stream = ds.iterator()
    return train(config, xs, stream)


def load_checkpoint_model(config: dict[str, Any], directory: str) -> tuple[EncoderWithHead, dict]:
    """The model a checkpoint exports: its weight average when it holds one, else its weights."""
    model = build_model(config)
    if has_average(directory):
        average = weight_average(model)  # the saved state replaces its weights and count
        read_weights(directory, average, CKPT_AVERAGE)
        model = average.module
    else:
        read_weights(directory, model)
    return model, read_state(directory)
