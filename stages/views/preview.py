"""A preview image of sampled view pairs: look at what the encoder will be asked to match."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _draw(ax: plt.Axes, x: np.ndarray, title: str) -> None:
    if x.ndim == 4 and x.shape[0] <= 4:  # [channels, D, H, W] volume patch: first channel
        x = x[0]
    if x.ndim == 2 and x.shape[0] <= 16:  # [channels, time]: one line per channel
        for ch in x:
            ax.plot(ch, lw=0.8)
    elif x.ndim == 2:
        ax.imshow(x, aspect="auto", origin="lower")
    elif x.ndim == 3:  # volume: middle slice
        ax.imshow(x[x.shape[0] // 2], cmap="gray")
    else:
        ax.plot(np.ravel(x), lw=0.8)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)


def preview_png(samples: list[tuple[str, np.ndarray, list[np.ndarray]]]) -> bytes:
    """``[(id, original, [view0, view1, ...]), ...]`` → PNG bytes, one row per sample."""
    n_cols = 1 + max(len(v) for _, _, v in samples)
    fig, axes = plt.subplots(len(samples), n_cols, figsize=(3 * n_cols, 2 * len(samples)), squeeze=False)
    for r, (rid, x, views) in enumerate(samples):
        _draw(axes[r][0], x, f"{rid} (original)")
        for c, v in enumerate(views, start=1):
            _draw(axes[r][c], v, f"view {c - 1}")
        for c in range(len(views) + 1, n_cols):
            axes[r][c].axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()
