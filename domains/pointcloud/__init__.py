"""Point-cloud domain: 3D shapes as ``[N, 3]`` clouds (Z up, unit sphere), PointNet/DGCNN encoders,
PointNet/CrossPoint/OcCo/Point-CMAE views, and the ModelNet protocol (linear SVM, kNN, few-shot).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from domains import register_domain
from domains.base import Domain, DomainResult, EvalContext, Row, ViewPolicy
from domains.options import build_named
from domains.pointcloud.encoders import ENCODERS
from domains.pointcloud.options import ENCODER_OPTIONS, EVALUATE_OPTIONS, SOURCE_OPTIONS
from domains.pointcloud.readers import SOURCES
from domains.pointcloud.sampling import normalise_unit_sphere
from domains.pointcloud.views import ENGINE as VIEWS

#: voxels per axis of the occupancy fingerprint (on the unit sphere's bounding cube)
FINGERPRINT_GRID = 6


@register_domain("pointcloud")
class PointCloudDomain(Domain):
    sources = SOURCES
    source_options = SOURCE_OPTIONS
    encoder_options = ENCODER_OPTIONS
    evaluate_options = EVALUATE_OPTIONS
    tasks = ("classification", "few_shot")
    preview_kind = "points"
    min_points = 32

    def validate(self, row: Row) -> str | None:
        x, meta = row["x"], row.get("meta") or {}
        if meta.get("faces") == 0:
            return f"empty mesh: no faces ({meta.get('vertices', 0)} vertices)"
        if "area" in meta and not meta["area"] > 0:
            return f"degenerate mesh: surface area {meta['area']} ({meta.get('faces')} faces)"
        if x.ndim != 2 or x.shape[1] != 3:
            return f"expected [points, 3], got shape {tuple(x.shape)}"
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x).all(axis=1)).sum())
            return f"non-finite coordinates: {bad} of {len(x)} points have NaN/Inf"
        if len(x) < self.min_points:
            return f"too few points: {len(x)} (need >= {self.min_points})"
        x64 = x.astype(np.float64)  # float32 overflows for coordinates near its maximum
        sv = np.linalg.svd(x64 - x64.mean(axis=0), compute_uv=False)
        if not np.isfinite(sv).all():
            return "coordinates too large to normalise"
        if sv[0] < 1e-9:
            return "degenerate cloud: all points coincide"
        if sv[1] < 1e-6 * sv[0]:
            return "degenerate cloud: all points on one line"
        return None

    def normalise(self, x: np.ndarray) -> np.ndarray:
        return normalise_unit_sphere(x)

    def fingerprint(self, xs: list[np.ndarray]) -> np.ndarray:
        """Square-root voxel occupancy on a coarse grid: near 1 in cosine only for the same shape
        (copies of one model in another colour or under another name), rotation-sensitive on purpose
        since the models are upright."""
        g = FINGERPRINT_GRID
        out = np.zeros((len(xs), g**3), dtype=np.float32)
        for i, x in enumerate(xs):
            p = normalise_unit_sphere(x)
            cells = np.clip(((p + 1.0) / 2.0 * g).astype(int), 0, g - 1)
            flat = cells[:, 0] * g * g + cells[:, 1] * g + cells[:, 2]
            out[i] = np.sqrt(np.bincount(flat, minlength=g**3) / max(len(p), 1))
        return out

    def augment(self, x: np.ndarray, rng: np.random.Generator, policy: ViewPolicy) -> np.ndarray:
        return VIEWS.view(x, rng, policy)

    def build_encoder(self, cfg: dict[str, Any]) -> nn.Module:
        return build_named(ENCODERS, cfg, "point-cloud")

    def collate(self, xs: list[np.ndarray]) -> torch.Tensor:
        """``[B, N, 3]``; clouds with fewer than the largest ``N`` points repeat their points cyclically
        (max pooling is unchanged by duplicates)."""
        n = max(len(x) for x in xs)
        return torch.from_numpy(np.stack([np.resize(np.asarray(x, np.float32), (n, 3)) for x in xs]))

    def evaluate(self, ctx: EvalContext) -> DomainResult | None:
        # here, not at the top: scikit-learn's import (about 1 s) is paid by every process that loads the
        # domain (ingest's read tasks, each pretraining worker), and only evaluation uses it
        from domains.pointcloud import tasks

        opts = {"knn_k": 5, "ways": 5, "shots": 10, "queries": 20, "episodes": 10}
        unknown = sorted(set(ctx.recipe["evaluate"]["domain"]) - set(opts))
        if unknown:
            raise ValueError(f"evaluate.domain: unknown option(s) {unknown}; known: {sorted(opts)}")
        opts.update(ctx.recipe["evaluate"]["domain"])
        train = [r for r in ctx.train_rows if r.get("label") is not None]
        test = [r for r in ctx.test_rows if r.get("label") is not None]
        if not train or not test:
            return None
        classes = sorted({r["label"] for r in train})
        # The evaluate stage hands over no test row of a class unseen in training (one rule for
        # every domain, stages/common/labelled.py), so every test label has an index here.
        index = {c: i for i, c in enumerate(classes)}
        ytr = np.array([index[r["label"]] for r in train])
        yte = np.array([index[r["label"]] for r in test])
        encoders = dict(ctx.encoders)
        supervised = tasks.load_supervised(ctx.models_dir, self.build_encoder)
        if supervised is not None:
            encoders["supervised"] = supervised
        results: dict[str, dict[str, Any]] = {}
        for name, enc in encoders.items():
            tr = ctx.embed(enc, [r["x"] for r in train])
            te = ctx.embed(enc, [r["x"] for r in test])
            svm, C = tasks.linear_svm_accuracy(tr, ytr, te, yte, seed=ctx.seed)
            results[name] = {
                "linear_svm": svm,
                "linear_svm_C": C,
                "knn": tasks.knn_accuracy(tr, ytr, te, yte, k=int(opts["knn_k"])),
                "few_shot": tasks.few_shot_accuracy(
                    tr,
                    ytr,
                    te,
                    yte,
                    ways=int(opts["ways"]),
                    shots=int(opts["shots"]),
                    queries=int(opts["queries"]),
                    episodes=int(opts["episodes"]),
                    seed=ctx.seed,
                ),
            }
            print(f"evaluate[pointcloud]: {name}: {results[name]}", flush=True)
        md = tasks.markdown_table(results, len(train), len(test), len(classes))
        return DomainResult(metrics=results, markdown=md)
