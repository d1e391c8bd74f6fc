"""Pretrain: ``curated/`` + ``views/plan.json`` → ``models/<recipe>/pretrained/`` via Ray Train.

The run lives under ``runs/<recipe>/pretrain-<hash>``, where the hash covers the configuration and
the input data: re-running the same stage after an interruption resumes from the latest checkpoint,
while a changed parameter starts a fresh run instead of resuming a stale one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from domains import get_domain
from domains.base import ViewPolicy, is_train
from stages.common import diagnostics
from stages.common.bank import BANK_DIR
from stages.common.cli import Dirs, StageError, main
from stages.common.encoders import HEAD_FILE, save_encoder, state_to_bytes
from stages.common.losses import build_loss
from stages.common.ray_session import init_ray
from stages.common.rows import table_to_rows, train_mask
from stages.common.schema import RayCfg, Recipe
from stages.common.sources import domain_package, python_files, sources_sha
from stages.common.storage import join, read_json, read_table, write_json
from stages.pretrain.checkpoint import CKPT_STATE, read_state
from stages.pretrain.loop import check_views, load_checkpoint_model, train_loop_per_worker
from stages.pretrain.stream import (
    ingest_options,
    plan_view_workers,
    shard_name,
    stream_name,
    unsupported,
    view_stream,
)


def job_config(recipe: Recipe, dirs: Dirs, rows: list[dict], world: int) -> dict[str, Any]:
    """Everything a worker needs, as plain JSON-able values (also hashed to name the run)."""
    cfg = recipe.pretrain
    if cfg.batch_size % world:
        raise StageError(f"pretrain.batch_size={cfg.batch_size} is not divisible by ray.num_workers={world}")
    local_batch = cfg.batch_size // world
    full_steps = (len(rows) // world) // local_batch
    if full_steps < 1:
        raise StageError(
            f"{len(rows)} training rows cannot fill one global batch of pretrain.batch_size={cfg.batch_size}"
        )
    plan = read_json(join(dirs.data, "views", "plan.json"))
    domain = get_domain(recipe.domain)
    policy = {"name": plan["policy"], "params": plan["params"]}
    # the plan is the views stage's contract; a plan written before multi-crop existed lacks the keys
    views = {
        "n_views": plan.get("n_views", recipe.views.n_views),
        "small_crops": plan.get("small_crops", recipe.views.small_crops),
        "small_crop_scale": plan.get("small_crop_scale", recipe.views.small_crop_scale),
        "materialize": plan.get("bank_size", 0) if plan.get("mode") == "materialized" else 0,
    }
    loss_fn = (
        None if cfg.loss in domain.objectives() else build_loss(cfg.loss, cfg.temperature, cfg.loss_options)
    )
    try:
        check_views(
            domain, cfg.loss, loss_fn, type(recipe.views)(**views), ViewPolicy(**policy), rows[0]["x"]
        )
    except ValueError as e:
        raise StageError(str(e)) from None
    return {
        "domain": recipe.domain,
        "encoder": {**recipe.encoder, **domain.data_args(rows[0]["x"])},
        "pretrain": cfg.model_dump(),
        "policy": policy,
        "views": views,
        "local_batch": local_batch,
        "steps_per_epoch": min(full_steps, cfg.steps_per_epoch or full_steps),
        "world_size": world,
    }


def online_knn_set(rows: list[dict], n: int, seed: int) -> dict[str, list] | None:
    """Up to ``n`` labelled training rows split half kNN bank, half queries by group (a group never
    on both sides, as in evaluation); ``None`` when the rows carry too few labels or groups."""
    from sklearn.model_selection import GroupShuffleSplit

    labelled = [r for r in rows if r.get("label") is not None and is_train(r)]
    if n == 0 or len(labelled) < 4:
        return None
    pick = np.sort(np.random.default_rng(seed).permutation(len(labelled))[:n])
    sub = [labelled[i] for i in pick]
    groups = [r.get("group") or r["id"] for r in sub]
    if len(set(groups)) < 2:
        return None
    bank, query = next(GroupShuffleSplit(1, test_size=0.5, random_state=seed).split(sub, groups=groups))
    return {
        "bank_x": [sub[i]["x"] for i in bank],
        "bank_y": [sub[i]["label"] for i in bank],
        "query_x": [sub[i]["x"] for i in query],
        "query_y": [sub[i]["label"] for i in query],
    }


def read_train_rows(dirs: Dirs) -> tuple[Any, list[dict]]:
    """The curated table's training rows, as a table and as rows: every training row reaches the
    trainer (labels are never read there); test rows never inform pretraining."""
    table = read_table(join(dirs.data, "curated"))
    table = table.filter(train_mask(table.column("split")))
    rows = table_to_rows(table)
    if not rows:
        raise StageError("no training rows after curation")
    return table, rows


def worker_extras(recipe: Recipe, dirs: Dirs, rows: list[dict]) -> dict[str, Any]:
    """What every worker gets beside :func:`job_config` and is not part of the run's name: where
    live metrics go, the online kNN set and the diagnostic sample. Both are small (a few hundred
    rows) and only diagnostics, so they travel in the worker config; the run name already covers the
    rows they are drawn from."""
    cfg = recipe.pretrain
    # the fixed sample for alignment/uniformity/RankMe at checkpoint epochs (stages.common.diagnostics)
    pick = diagnostics.sample_indices(len(rows), cfg.diagnostic_rows, cfg.seed, rows[0]["x"].nbytes)
    return {
        "live_dir": os.path.abspath(join(dirs.metrics, "pretrain")) if "://" not in dirs.metrics else None,
        "online_knn": online_knn_set(rows, cfg.online_knn_rows, cfg.seed),
        "diagnostic_sample": [rows[i]["x"] for i in pick],
    }


def encoder_config(recipe: Recipe, config: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """The exported encoder's ``config.json`` (stages.common.encoders): how to rebuild it."""
    return {
        "domain": recipe.domain,
        "encoder": config["encoder"],
        "embedding_dim": model.encoder.embedding_dim,
    }


def train_blocks(table: Any, block_mb: float = 64.0) -> list[Any]:
    """``table`` cut into blocks of about ``block_mb`` MB (at least one): Ray Data splits a dataset
    over the training workers along block boundaries first, so a large table is not one block."""
    n = table.num_rows
    per = max(1, int(n * block_mb * 2**20 / max(table.nbytes, 1)))
    return [table.slice(s, per) for s in range(0, n, per)] or [table]


ROOT = Path(__file__).resolve().parents[2]


def code_fingerprint(domain: str, root: Path = ROOT, package: Path | None = None) -> str:
    """Hash of the Python sources a pretraining run executes: ``stages/pretrain``, ``stages/common``,
    the shared ``domains/*.py`` and the domain's own package (dvc.yaml's code deps of the stage;
    the package found from the registered domain, so a plug-in domain's code counts too).

    Part of :func:`run_name`, because a run resumes from the latest checkpoint stored under its
    name: without it, a stage that DVC re-ran after a code change (a fixed augmentation, a new
    loss) found the finished run of the old code and handed back its weights untrained.
    ``package``: the domain's package folder (default: :func:`domain_package`).
    """
    files = [
        *python_files(root / "stages" / "pretrain"),
        *python_files(root / "stages" / "common"),
        *python_files(root / "domains"),
        *python_files(package or domain_package(domain), recursive=True),
    ]
    return sources_sha(files)[:16]


def run_name(config: dict[str, Any], rows: list[dict], code: str = "") -> str:
    """Hash of the job configuration, the training rows' ids and contents and the code
    (:func:`code_fingerprint`): the same name, and so a resume, only for the same run."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    h.update(code.encode())
    for r in rows:
        h.update(r["id"].encode())
        h.update(r["x"].tobytes())
    return "pretrain-" + h.hexdigest()[:12]


def rank_datasets(ds: Any, world: int, cache_mb: float, seed: int) -> tuple[dict[str, Any], str]:
    """Each rank's dataset of training rows (``train_rank<r>``) and their layout for the workers'
    ``ShardReader``: ``"all"`` or ``"split"``.

    Rows that fit ``pretrain.shard_cache_mb`` go whole to every rank, which trains on its slice of
    each epoch's global permutation (``DistributedSampler``'s scheme, and the view stream's): every
    global batch is a uniform draw from all rows, as in one process. Larger ones are split into one
    shard per rank of a seeded shuffle. Never split in stored order: sources sit in runs, so each
    worker trained on its own sources (the medical demo: one brain template per worker; audio: only
    one worker ever saw a human voice) and, with BatchNorm per worker on CPU, normalised them apart. Split here,
    once, rather than by Ray Train's streaming split: no split-coordinator actor (a process and a
    second or two of start-up per run) sits between the rows and the workers; ``equal``: no rank
    waits for another at the end of an epoch."""
    if ds.size_bytes() <= cache_mb * 2**20:
        return {shard_name(r): ds for r in range(world)}, "all"
    parts = ds.random_shuffle(seed=seed).split(world, equal=True)
    return {shard_name(r): part for r, part in enumerate(parts)}, "split"


def make_trainer(config: dict[str, Any], ds: Any, ray_cfg: RayCfg, storage: str, name: str) -> Any:
    """A ``TorchTrainer`` for ``train_loop_per_worker``; re-creating it with the same ``(storage,
    name)`` resumes from the run's latest checkpoint (Ray Train V2).

    ``ds``: the training rows (laid out over the workers here: :func:`rank_datasets`), or a dict of per-rank
    datasets such as the view streams (``views_rank<r>``, stages/pretrain/stream.py); each worker
    reads only its own, in order."""
    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig

    from stages.pretrain.ray_train import PromptTorchTrainer

    if ray.is_initialized() and single_host():
        # Ray Train's preemption watcher (an actor polling Ray for nodes being drained, ~2 s of
        # start-up on 2 cores) has nothing to watch when every node is this machine: no autoscaler
        # drains it. Read by the controller, to which Ray Train hands this variable. Set here, not
        # in the stage alone, so the benches and tests that build a trainer run the stage's trainer.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    if isinstance(ds, dict):
        datasets = ds
    else:
        datasets, layout = rank_datasets(
            ds, config["world_size"], config["pretrain"]["shard_cache_mb"], config["pretrain"]["seed"]
        )
        config = {**config, "shard_layout": layout}
    return PromptTorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=config["world_size"],
            use_gpu=ray_cfg.use_gpu,
            resources_per_worker={"CPU": ray_cfg.cpus_per_worker, **ray_cfg.worker_resources},
            placement_strategy=ray_cfg.placement_strategy,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=ray_cfg.max_failures),
        ),
        datasets=datasets,
        # every dataset is per rank already (shards, view streams): each worker reads only its own
        dataset_config=DataConfig(
            datasets_to_split=[],
            execution_options={k: ingest_options() for k in datasets if k.startswith(stream_name(0)[:-1])},
        ),
    )


def check_gpus(ray_cfg: RayCfg, world: int) -> None:
    """With ``ray.use_gpu``, each training worker needs a GPU: fail in one line where none can come
    (an embedded local instance), say so where an autoscaler might still add them."""
    import ray

    if not ray_cfg.use_gpu:
        return
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus >= world:
        return
    message = f"ray.use_gpu=true needs {world} GPU(s), one per ray.num_workers; the cluster has {gpus}"
    if not (os.environ.get("RAY_ADDRESS") or ray_cfg.address):
        raise StageError(message + " (set ray.use_gpu=false or ray.num_workers)")
    print(f"pretrain: WARNING: {message}; training waits until GPU nodes join", flush=True)


def latest_epoch(storage: str, name: str) -> int:
    """The epoch after the run's latest local checkpoint (0 without one): where its view stream starts.
    (A worker that resumes later than this skips the stream's earlier epochs.)"""
    best = 0
    for state in Path(storage, name).glob(f"checkpoint_*/{CKPT_STATE}"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            best = max(best, read_state(str(state.parent))["epoch"] + 1)
    return best


def single_host() -> bool:
    """Whether every node of the Ray cluster runs on one machine, this stage's (an embedded instance,
    a head started with ``ray start`` for ``ray job submit``, the tests' clusters on 127.0.0.1):
    then its logical CPUs may exceed the cores it really has."""
    import ray

    return len({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}) <= 1


def view_streams(
    recipe: Recipe, config: dict[str, Any], rows: list[dict], storage: str, name: str, local: bool
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The per-rank view streams when views are made by Ray Data (``pretrain.online_views``), else
    None, and the workers' ``view_stream`` settings; one line says where views are made and why."""
    import ray

    cfg, world = recipe.pretrain, config["world_size"]
    domain = get_domain(recipe.domain)
    views = config["views"]
    reason = unsupported(cfg.loss in domain.objectives(), views["materialize"], views["small_crops"])
    workers, cpus, why = plan_view_workers(
        cfg.online_views,
        reason,
        cfg.view_workers,
        float(ray.cluster_resources().get("CPU", 0)),
        world * recipe.ray.cpus_per_worker,
        local=local,
        steps=config["steps_per_epoch"] * cfg.epochs,
        min_steps=cfg.stream_min_steps,
        gpu=recipe.ray.use_gpu,
    )
    print(f"pretrain: {why}", flush=True)
    if not workers:
        return None, {}
    spec = {"view_stream": {"workers": workers, "cpus": cpus, "prefetch_batches": cfg.prefetch_batches}}
    rows_ref = ray.put([r["x"] for r in rows])
    start = latest_epoch(storage, name) if "://" not in storage else 0
    streams = {
        stream_name(r): view_stream(rows_ref, len(rows), {**config, **spec}, r, start) for r in range(world)
    }
    return streams, spec


def run(recipe: Recipe, dirs: Dirs) -> None:
    import ray.data

    from stages.pretrain.ray_train import prestart_autoscaling_coordinator

    table, rows = read_train_rows(dirs)
    world = recipe.ray.num_workers
    config = job_config(recipe, dirs, rows, world)
    name = run_name(config, rows, code_fingerprint(recipe.domain))
    init_ray(recipe.ray)
    # its process starts while the driver builds the dataset and the trainer, not inside fit()
    prestart_autoscaling_coordinator()
    check_gpus(recipe.ray, world)
    storage = join(dirs.runs) if "://" in dirs.runs else os.path.abspath(dirs.runs)
    # made after the run is named: where views are made depends on the cluster, not on the recipe alone
    local = single_host()
    streams, stream_spec = view_streams(recipe, config, rows, storage, name, local)
    if streams is not None:
        ds = streams
    elif config["views"]["materialize"]:  # the views stage's bank of training rows' views
        bank = join(dirs.data, "views", BANK_DIR)
        ds = ray.data.read_parquet(
            bank, file_extensions=["parquet"], columns=["views", "shapes"]
        ).materialize()
    else:
        # Every training row reaches the trainer (labels are never read there); test rows never
        # inform pretraining. The driver already holds these rows (it hashes them to name the run),
        # so they go to the object store as they are: reading the shards again with Ray Data's read
        # tasks cost 6 s of worker start-up per stage for the same bytes.
        ds = ray.data.from_arrow(train_blocks(table.select(["x", "shape"])))
    extra = {**worker_extras(recipe, dirs, rows), **stream_spec}
    trainer = make_trainer({**config, **extra}, ds, recipe.ray, storage, name)
    print(
        f"pretrain: {len(rows)} rows, {world} workers x {config['local_batch']} per batch, "
        f"{config['steps_per_epoch']} steps/epoch, {recipe.pretrain.epochs} epochs, run {name}",
        flush=True,
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise StageError(f"pretraining finished without a checkpoint (run {name})")
    with result.checkpoint.as_directory() as d:
        model, state = load_checkpoint_model(config, d)
    history = state["history"]
    last = history[-1]
    card = model_card(recipe, config, history, name)
    enc_config = encoder_config(recipe, config, model)
    files = {}
    # Keep the projection head too (fine-tuning's contrastive regulariser and evaluation of the
    # features after the head use it); objectives that own the head (CURL) have no projection head.
    if recipe.pretrain.head.type != "none" and isinstance(model.head, (nn.Linear, nn.Sequential)):
        enc_config["head"] = recipe.pretrain.head.model_dump()
        files[HEAD_FILE] = state_to_bytes(model.head)
    save_encoder(join(dirs.models, "pretrained"), model.encoder, enc_config, card, files)
    write_json(
        join(dirs.metrics, "pretrain.json"),
        {
            "epochs": len(history),
            "final_loss": last["loss"],
            "rankme": last["rankme"],
            "alignment": last["alignment"],
            "uniformity": last["uniformity"],
            "step_time_s": sum(h["step_time_s"] for h in history) / len(history),
            "data_wait_fraction": sum(h["data_wait_fraction"] for h in history) / len(history),
            # time the trainer spent making views itself (0 when they were streamed or materialised)
            "view_fraction": sum(h.get("view_fraction", 0.0) for h in history) / len(history),
            "collapsed": bool(last["collapsed"]),
            **({"online_knn": last["online_knn"]} if "online_knn" in last else {}),
        },
    )
    print(
        f"pretrain: final loss {last['loss']:.4f}, RankMe {last['rankme']:.1f} -> {join(dirs.models, 'pretrained')}"
    )


def model_card(recipe: Recipe, config: dict, history: list[dict], run: str) -> str:
    return f"""# {recipe.name} — pretrained {recipe.domain} encoder

Trained by contraflow's pretrain stage (run `{run}`): {recipe.pretrain.loss} loss,
temperature {recipe.pretrain.temperature}, {len(history)} epochs, global batch {recipe.pretrain.batch_size}
on {config["world_size"]} Ray worker(s), view policy `{config["policy"]["name"]}`.
Final loss {history[-1]["loss"]:.4f}; RankMe {history[-1]["rankme"]:.1f}.

```python
from stages.common.encoders import load_encoder
encoder = load_encoder("{join(recipe.paths.models, recipe.name, "pretrained")}")
embeddings = encoder(batch)  # [B, {config["encoder"].get("out_dim", "D")}]
```

Encoder config: `{json.dumps(config["encoder"], sort_keys=True)}`
"""


if __name__ == "__main__":
    sys.exit(main("pretrain", run))
