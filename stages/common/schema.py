"""Typed schema of a recipe: ``params.yaml`` defaults merged with ``pipelines/<recipe>.yaml``.

Every section forbids unknown keys and bounds its values, so a typo or an out-of-range value fails
before any work starts, as a one-line error naming the key (see ``stages.common.config``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


#: ``data.normalise`` modes that only a domain with training statistics (``normalise_from_train``)
#: defines; ``auto`` uses them where the domain has them and falls back to per-row elsewhere
TRAIN_STATISTICS_MODES = ("train", "per_row_stats")


class DataCfg(Section):
    """Where the rows come from: a named source of the domain and its options."""

    source: str
    #: the source's own options; checked against its typed model (``Domain.source_options``,
    #: ``domains/<domain>/options.py``) when the recipe loads
    options: dict[str, Any] = Field(default_factory=dict)
    #: "validation": choose hyperparameters without the test set: ingest drops the published test
    #: rows and marks a seeded, stratified, group-safe val_fraction of the training rows as the test
    #: split (stages/ingest/holdout.py); "none": the published splits as they are
    holdout: Literal["none", "validation"] = "none"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    val_seed: int = 0
    #: how ingest normalises ``x``. "per_row": the domain's per-row normalisation (time series:
    #: each series z-normalised on its own, the UCR convention); "auto": decided from the training
    #: rows (time series: series already z-normalised stay so, other data is z-scored per channel
    #: with the training rows' statistics, fitted after the holdout split; other domains: per row);
    #: "train": the training rows' statistics (time series only); "per_row_stats" (time series
    #: only): per_row, plus each channel's level and log scale against the training rows'
    #: statistics as constant extra channels when the series are not already z-normalised
    #: (domains/timeseries/normalise.py); "none": as read. per_row is the
    #: default because it won on validation splits of 7 unnormalised UCR sets (0.820 vs auto's
    #: 0.790, 3 seeds: bench/results/ucr_normalise_validation.md)
    normalise: Literal["per_row", "auto", "train", "per_row_stats", "none"] = "per_row"


class IngestCfg(Section):
    #: rows per Parquet shard written by Ray Data
    rows_per_shard: int = Field(4096, ge=1)
    #: fail the stage when more than this fraction of rows (or units) is rejected
    max_rejected_fraction: float = Field(0.5, ge=0.0, le=1.0)
    #: a test row that fails validation (or a test file that cannot be read, or fewer test rows than
    #: the source's published test file holds): "fail" stops ingest naming the row; "drop_and_report"
    #: quarantines it and counts it in metrics/<recipe>/ingest.json (``test_rows_rejected``)
    test_rows: Literal["fail", "drop_and_report"] = "fail"
    #: units (files, episodes...) read per Ray task, at least: each task's worker pays seconds of
    #: imports before it reads anything (6 meshes in 6 tasks: 14-15 s on 2 cores; in 1 task: 6.5-8 s),
    #: so a few small units are read by one task; at most 64 tasks
    units_per_task: int = Field(8, ge=1)


class NearDedupCfg(Section):
    """Banded LSH (p-stable or SimHash) over domain fingerprints; candidates verified exactly."""

    enabled: bool = True
    #: cosine similarity of fingerprints at or above which two rows are near duplicates; None: the
    #: domain's own (``Domain.near_threshold``: 0.999, time series 0.99999 — see its ``fingerprint``)
    threshold: float | None = Field(None, gt=0.0, le=1.0)
    #: training rows near a test row: only reported by default (near is not equal: in small UCR sets
    #: most training series have a test series of the same class above 0.99)
    leakage: Literal["drop_train", "report"] = "report"
    #: LSH family (stages/curate/near.py): p-stable projections quantised into buckets (Datar et al.
    #: 2004; 13 per band) or SimHash sign bits (Charikar 2002; 97 per band at 0.999): both find the
    #: same pairs up to LSH's recall, p-stable hashes 7.5x fewer projections
    hash: Literal["pstable", "simhash"] = "pstable"
    #: LSH bands; a pair is a candidate when all hash values of any one band agree
    bands: int = Field(20, ge=1, le=256)
    #: hash values per band; None: chosen so that a pair exactly at the threshold shares a given band
    #: with probability 1/4 (it then becomes a candidate with probability 1 - 0.75^bands: 99.7 %)
    rows_per_band: int | None = Field(None, ge=1, le=256)


class EmbeddingCfg(Section):
    """Embeddings and k-means clusters shared by SemDeDup and balancing (fit on training rows only)."""

    #: a previous run's ``models/<recipe>/pretrained``; None: a random-init encoder of the recipe's
    #: architecture (seeded)
    encoder: str | None = None
    clusters: int = Field(16, ge=1)
    kmeans_iters: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=1)


class SemDedupCfg(Section):
    enabled: bool = False
    #: within-cluster cosine similarity of embeddings above which a row duplicates a kept one
    threshold: float = Field(0.95, gt=0.0, le=1.0)
    #: which row of a duplicate group survives: the one farthest from the centroid (SemDeDup paper)
    #: or the closest
    keep: Literal["farthest", "closest"] = "farthest"


class BalanceCfg(Section):
    """Cluster-based sampling: at most ``max_per_cluster`` training rows per k-means cluster."""

    enabled: bool = False
    max_per_cluster: int = Field(1000, ge=1)


class CurateCfg(Section):
    quality_filter: bool = True
    exact_dedup: bool = True
    near_dedup: NearDedupCfg = Field(default_factory=NearDedupCfg)
    embedding: EmbeddingCfg = Field(default_factory=EmbeddingCfg)
    semdedup: SemDedupCfg = Field(default_factory=SemDedupCfg)
    balance: BalanceCfg = Field(default_factory=BalanceCfg)
    #: what to do with training rows that duplicate a test row: drop them (test wins) or only report
    leakage: Literal["drop_train", "report"] = "drop_train"
    #: fail when curation removes more than this fraction of rows
    max_removed_fraction: float = Field(0.9, ge=0.0, le=1.0)
    #: a test row that fails the quality filter: "fail" stops curation naming the row; "drop_and_report"
    #: removes it and counts it in curation_report.json and metrics/<recipe>/curate.json
    #: (``test_rows_removed``). Dedup and leakage rules never remove test rows.
    test_rows: Literal["fail", "drop_and_report"] = "fail"
    #: seeds LSH hyperplanes, the random-init encoder, k-means and balancing draws
    seed: int = 0
    #: at or above this many rows the stage runs on Ray Data (streaming, distributed); below, in-process
    ray_min_rows: int = Field(50_000, ge=0)


class AugStep(Section):
    model_config = ConfigDict(extra="allow")
    name: str
    p: float = Field(1.0, ge=0.0, le=1.0)


class ViewsCfg(Section):
    #: a named policy of the domain, or an explicit list of steps
    policy: str | list[AugStep] = "default"
    #: global views per sample; pairwise losses average over every pair of them
    n_views: int = Field(2, ge=2, le=16)
    #: extra low-resolution views (SwAV/DINO multi-crop): queries only, never codes or keys; needs the
    #: domain's ``small_crops`` hook
    small_crops: int = Field(0, ge=0, le=16)
    #: a small crop's extent as a fraction of the sample's (time series: of its length)
    small_crop_scale: float = Field(0.3, gt=0.0, le=1.0)
    #: 0: views are made online in the pretraining workers; K > 0: the views stage materialises K
    #: augmented views of every training row once (in parallel, with Ray Data) and pretraining draws
    #: n_views distinct ones of them per step: for augmentations too costly to repeat every epoch
    materialize: int = Field(0, ge=0, le=256)
    preview_pairs: int = Field(4, ge=1, le=32)
    seed: int = 0

    @field_validator("materialize")
    @classmethod
    def _bank_holds_the_views(cls, k: int, info: ValidationInfo) -> int:
        if k and k < info.data.get("n_views", 2):
            raise ValueError(f"{k} views per row cannot give n_views={info.data['n_views']}")
        if k and info.data.get("small_crops"):
            raise ValueError("small crops are cut online from the sample; use views.small_crops=0")
        return k


class HeadCfg(Section):
    type: Literal["none", "linear", "mlp"] = "mlp"
    hidden_dim: int = Field(512, ge=1)
    out_dim: int = Field(128, ge=1)
    depth: int = Field(2, ge=1, le=4)


class PretrainCfg(Section):
    #: a name from the loss registry (stages/common/losses/) or one of the domain's objectives
    loss: str = "ntxent"
    #: the chosen loss's own options (e.g. {n_hard: 16, n_mix: 16} for mochi); validated against
    #: the loss when the recipe loads, so an unknown key fails naming it
    loss_options: dict[str, Any] = Field(default_factory=dict)
    #: used by every loss that has a temperature (all but vicreg and byol)
    temperature: float = Field(0.1, gt=0.0, le=10.0)
    epochs: int = Field(50, ge=1)
    #: global batch size, split evenly over Ray workers
    batch_size: int = Field(32, ge=2)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    #: cap on steps per epoch (None: one pass over the data)
    steps_per_epoch: int | None = Field(None, ge=1)
    checkpoint_every: int = Field(10, ge=1)
    head: HeadCfg = Field(default_factory=HeadCfg)
    seed: int = 0
    #: training rows smaller than this (MB) go whole to every worker, which keeps them in memory and
    #: takes its slice of each step's global batch; larger ones are split into per-worker shards of a
    #: seeded shuffle, each kept in memory if it fits, else streamed every epoch
    shard_cache_mb: float = Field(512.0, ge=0.0)
    #: torch intra-op threads per worker (1 avoids oversubscribing small machines)
    threads_per_worker: int = Field(1, ge=1)
    #: ``swa``: the exported encoder is the running uniform average of the weights after every
    #: optimiser step, from the initial weights on (``torch.optim.swa_utils.AveragedModel``, buffers
    #: included): TS2Vec trains this way and encodes with the average, never the last weights. The
    #: live weights keep training, and a resumed run continues both. ``none``: the last weights.
    weight_average: Literal["none", "swa"] = "none"
    #: bf16: forward and loss under bf16 autocast on CUDA; on the CPU it falls back to fp32 with a
    #: logged line (stages/common/device.py says why)
    precision: Literal["fp32", "bf16"] = "fp32"
    #: with ``ray.use_gpu`` and more than one worker, BatchNorm statistics over the global batch
    #: (``torch.nn.SyncBatchNorm``, SimCLR's global BN); torch runs it on accelerators only, so CPU
    #: workers normalise their own batch either way (stages/pretrain/loop.py::sync_batchnorm)
    sync_batchnorm: bool = True
    #: labelled training rows (never test rows) for the online kNN diagnostic at checkpoint epochs,
    #: split half bank / half queries by group; 0 disables it
    online_knn_rows: int = Field(256, ge=0)
    #: training rows of the fixed, seeded sample on which alignment, uniformity, RankMe and the collapse
    #: warning are computed at checkpoint epochs (RankMe can reach min(rows, embedding dim)); capped by
    #: ``stages.common.diagnostics.SAMPLE_BYTES`` for large samples such as volumes
    diagnostic_rows: int = Field(1024, ge=2)
    #: where online views (``views.materialize: 0``) are made: ``stream`` — by Ray Data actors apart
    #: from the training workers, streamed to them with prefetch (stages/pretrain/stream.py);
    #: ``loop`` — by each training worker inside its step; ``auto`` — stream when the loss takes
    #: ready-made views, a CPU is left beside the training workers and the run is long enough
    #: (``stream_min_steps``), else loop
    online_views: Literal["auto", "stream", "loop"] = "auto"
    #: ``auto`` streams only runs of at least this many steps per worker: the view actors, Ray Data's
    #: actor tracker and the stream's start-up cost ~5 s of a 2-core machine's CPU (measured on a
    #: 4-step run: 24-26 s streamed, 20-21 s in the loop), more than a short run's views. Not applied
    #: with ``ray.use_gpu``: there the views are most of each step (bench/results/gpu_smoke.md)
    stream_min_steps: int = Field(100, ge=0)
    #: view-making actors when streaming (None: one per CPU left beside the training workers)
    view_workers: int | None = Field(None, ge=1, le=1024)
    #: batches of streamed views each training worker keeps ready ahead of its step
    prefetch_batches: int = Field(4, ge=1, le=64)


class FinetuneCfg(Section):
    #: linear probe, full fine-tune, or Core-tuning (full + contrastive regulariser, finetune/core_tuning.py)
    modes: list[Literal["linear", "full", "core"]] = Field(default_factory=lambda: ["linear", "full"])
    fractions: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0])
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    #: early stopping: epochs without validation improvement
    patience: int = Field(10, ge=1)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seeds: list[int] = Field(default_factory=lambda: [0])
    #: mode ``linear``: inverse L2 strengths of the logistic-regression head, one chosen per run on
    #: its validation labels (C = 1 when the label budget holds none; finetune/linear_head.py)
    linear_c_grid: list[float] = Field(
        default_factory=lambda: [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0], min_length=1
    )
    #: Core-tuning (mode ``core``): weight eta of the supervised contrastive term in CE + eta * L_con
    core_eta: float = Field(0.1, ge=0.0, le=100.0)
    #: Core-tuning: SupCon temperature (the official code's 0.07)
    core_temperature: float = Field(0.07, gt=0.0, le=10.0)
    #: Core-tuning: Beta(alpha, alpha) of the feature mixup that generates hard pairs
    core_mixup_alpha: float = Field(1.0, gt=0.0, le=100.0)
    #: run the fine-tunes as Ray tasks of one CPU each (stages/common/tasks.py) or one after another
    #: in the stage's process (true also sends the domain protocol's runs, e.g. the medical Dice
    #: fine-tunes, which gained nothing as tasks on 2 cores); null: tasks when a Ray session is at
    #: hand (make repro's shared instance, pipelines.run, a cluster job) and the scale is not
    #: ``tiny``, whose sub-second runs would wait longer for a task's worker to start than they take
    ray_tasks: bool | None = None

    @model_validator(mode="after")
    def _fractions_in_range(self) -> FinetuneCfg:
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ValueError(f"fractions: {f} is not in (0, 1]")
        return self


class EvaluateCfg(Section):
    probes: list[Literal["svm", "linear", "knn"]] = Field(default_factory=lambda: ["svm", "linear", "knn"])
    #: neighbours of the kNN probe (TS2Vec's protocol: 1)
    knn_k: int = Field(1, ge=1)
    #: every probe (and the random-init baseline) runs once per seed: mean, std and per-seed values
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    #: rows of the fixed seeded sample for the label-free diagnostics (alignment, uniformity, RankMe)
    diagnostic_rows: int = Field(1024, ge=2)
    #: nearest-neighbour retrieval examples in the report: query rows and neighbours per query
    retrieval_queries: int = Field(4, ge=0, le=32)
    retrieval_k: int = Field(5, ge=1, le=32)
    #: rows of the test split drawn in the embedding map (t-SNE)
    embedding_map_points: int = Field(500, ge=0)
    #: also probe the projection head's output z = g(h) (as ``<encoder>_head``), beside h
    head_features: bool = False
    #: the training rows every label-based fit uses — evaluate's probes, finetune's runs and the
    #: domain's own protocol (stages/common/labelled.py): "published": every training row ingest
    #: kept (``data/<recipe>/ingested``), whatever curation removed from the pretraining pool, so a
    #: data set with a published protocol (UCR) is scored on its published training split;
    #: "curated": the curated training rows; "auto": "published" when the rows carry a published
    #: split (some row is marked test), else "curated". Test rows are always the curated ones (all
    #: of them: curation never removes a test row without failing or counting it). evaluate.json's
    #: ``probe_rows`` and the report state the mode and how many training rows curation removed.
    probe_rows: Literal["auto", "published", "curated"] = "auto"
    #: options of the domain's own evaluation protocol (``Domain.evaluate``), e.g. the RL agent budget;
    #: checked against ``Domain.evaluate_options`` when the recipe loads
    domain: dict[str, Any] = Field(default_factory=dict)


class RayCfg(Section):
    #: None: start an embedded local instance (unless RAY_ADDRESS is set)
    address: str | None = None
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    #: logical CPUs of the embedded local instance (None: workers plus two for Ray Data)
    num_cpus: int | None = Field(None, ge=1)
    include_dashboard: bool = False
    #: the dashboard, when enabled, binds here; localhost unless you say otherwise
    dashboard_host: str = "127.0.0.1"
    max_failures: int = Field(2, ge=0)
    #: how training workers are placed on a cluster: PACK fills nodes, SPREAD puts one per node
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    #: extra custom resources each training worker needs (e.g. {"trainer": 1} to pin nodes)
    worker_resources: dict[str, float] = Field(default_factory=dict)


class PathsCfg(Section):
    """Roots of the outputs; local paths or any URI ``pyarrow.fs`` opens (s3://, gs://, file://)."""

    data: str = "data"
    models: str = "models"
    metrics: str = "metrics"
    runs: str = "runs"
    reports: str = "reports"


class Recipe(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    domain: str
    description: str = ""
    data: DataCfg
    #: ``name`` (default: the domain's first encoder) and its constructor's arguments; checked against
    #: ``Domain.encoder_options`` when the recipe loads
    encoder: dict[str, Any] = Field(default_factory=dict)
    ingest: IngestCfg = Field(default_factory=IngestCfg)
    curate: CurateCfg = Field(default_factory=CurateCfg)
    views: ViewsCfg = Field(default_factory=ViewsCfg)
    pretrain: PretrainCfg = Field(default_factory=PretrainCfg)
    finetune: FinetuneCfg = Field(default_factory=FinetuneCfg)
    evaluate: EvaluateCfg = Field(default_factory=EvaluateCfg)
    ray: RayCfg = Field(default_factory=RayCfg)
    paths: PathsCfg = Field(default_factory=PathsCfg)
    scale: str = "demo"
