"""The similarity distributions behind the dedup decisions, as one PNG next to the report."""

from __future__ import annotations

import io

import numpy as np

from stages.common.schema import Recipe
from stages.curate.near import HIST_BINS
from stages.curate.rules import Decisions, near_cfg


def similarity_png(recipe: Recipe, d: Decisions) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = recipe.curate
    panels = [
        (
            "near dedup: LSH candidate pairs\n(cosine of fingerprints)",
            d.hist_near,
            near_cfg(recipe).threshold,
        ),
        (
            "SemDeDup: each row vs nearest kept row\nof its cluster (cosine of embeddings)",
            d.hist_semantic,
            cfg.semdedup.threshold,
        ),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    # x is 1 - cosine on a log axis: duplicates live in the last decades before 0
    dist = np.maximum(1.0 - HIST_BINS, 1e-8)
    for ax, (title, hist, thr) in zip(axes, panels, strict=True):
        ax.stairs(hist, dist, fill=True, color="tab:blue")
        ax.axvline(1.0 - thr, color="tab:red", ls="--", label=f"threshold: cosine {thr:g}")
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_yscale("symlog")
        ax.set_title(title if hist.sum() else title + "\n(rule off or no candidates)", fontsize=9)
        ax.set_xlabel("1 - cosine similarity (log; duplicates to the right)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("count")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
