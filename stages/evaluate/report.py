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


def embedding_map_png(features: dict[str, np.ndarray], labels: np.ndarray | None, seed: int = 0) -> bytes:
    """t-SNE of embeddings, one panel per encoder, coloured by class (one colour without labels)."""
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(features), figsize=(4 * len(features), 3.6), squeeze=False)
    for ax, (name, f) in zip(axes[0], features.items(), strict=True):
        perplexity = float(min(30, max(2, (len(f) - 1) // 3)))
        xy = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(f)
        if labels is None:
            ax.scatter(xy[:, 0], xy[:, 1], s=6)
        else:
            ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=6, cmap="tab10")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return png(fig)


def label_efficiency_png(rows: list[dict]) -> bytes:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    series = sorted({k for r in rows for k in r if k != "fraction" and not k.endswith("_std")})
    for name in series:
        # a fraction whose figure is undefined (null in the JSON) is left out of its line
        pts = [(r["fraction"], r[name], r.get(f"{name}_std") or 0.0) for r in rows if r.get(name) is not None]
        if not pts:
            continue
        x, y, err = zip(*pts, strict=True)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=name)
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


def spread(mean: float | None, std: float | None, n: int, digits: int = 3) -> str:
    """``0.812 ± 0.010 (3 seeds)``; one seed has no spread to show."""
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "n/a"
    if n <= 1 or std is None:
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} ({n} seeds)"


def _draw_sample(ax: plt.Axes, x: np.ndarray, title: str, kind: str, sample_rate: int | None) -> None:
    """One sample drawn the way the views preview draws it (``stages/common/preview.py``)."""
    try:
        from stages.common.preview import draw_sample
    except ImportError:  # an older tree without the shared drawing: a plain trace of the values
        ax.plot(np.ravel(np.asarray(x))[:4096], lw=0.6)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=6)
        return
    draw_sample(ax, x, title, kind, sample_rate)


def retrieval_png(
    examples: list[tuple[str, np.ndarray, list[tuple[str, float, np.ndarray]]]],
    kind: str = "auto",
    sample_rate: int | None = None,
) -> bytes:
    """``[(query id, query, [(neighbour id, cosine distance, neighbour), ...]), ...]``: one row per
    query, drawn as the domain's preview kind (``Domain.preview_kind``)."""
    n_cols = 1 + max(len(n) for _, _, n in examples)
    fig, axes = plt.subplots(len(examples), n_cols, figsize=(2.6 * n_cols, 2 * len(examples)), squeeze=False)
    for r, (qid, q, neighbours) in enumerate(examples):
        _draw_sample(axes[r][0], q, f"query {qid}", kind, sample_rate)
        for c, (nid, d, x) in enumerate(neighbours, start=1):
            _draw_sample(axes[r][c], x, f"{nid} (d={d:.4f})", kind, sample_rate)
        for c in range(len(neighbours) + 1, n_cols):
            axes[r][c].axis("off")
    return png(fig)
