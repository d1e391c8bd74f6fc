"""``report.md`` for one recipe: metrics tables, training curves, view preview, embedding map,
label-efficiency curve. Figures are PNGs beside the report, linked relatively."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def curves_png(history: dict[str, list[tuple[float, float]]]) -> bytes:
    """Pretraining curves: one panel per logged metric (``{name: [(step, value), ...]}``)."""
    names = [n for n in history if history[n]]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(3.2 * max(len(names), 1), 2.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        steps, values = zip(*history[name], strict=True)
        ax.plot(steps, values)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    return png(fig)


def embedding_map_png(features: dict[str, np.ndarray], labels: np.ndarray, seed: int = 0) -> bytes:
    """t-SNE of test-split embeddings, one panel per encoder, coloured by class."""
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(features), figsize=(4 * len(features), 3.6), squeeze=False)
    for ax, (name, f) in zip(axes[0], features.items(), strict=True):
        perplexity = float(min(30, max(2, (len(f) - 1) // 3)))
        xy = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(f)
        ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=6, cmap="tab10")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return png(fig)


def label_efficiency_png(rows: list[dict]) -> bytes:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    series = sorted({k for r in rows for k in r if k != "fraction"})
    for name in series:
        pts = [(r["fraction"], r[name]) for r in rows if name in r]
        ax.plot(*zip(*pts, strict=True), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    return png(fig)


def table(header: list[str], rows: list[list]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
