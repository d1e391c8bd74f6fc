"""Draw samples the way their field looks at them: shared by the views preview and the report.

A sample's *kind* says how: ``series`` (one line per channel), ``audio`` (waveform and log-mel
spectrogram), ``points`` (a 3D scatter of an ``[N, 3]`` cloud), ``volume``/``image`` (a middle
slice). A domain names its kind with ``Domain.preview_kind``; ``auto`` guesses from the shape.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

KINDS = ("auto", "series", "audio", "points", "volume", "image")
#: a point cloud is drawn from at most this many points (a scatter of 10k points is a blur anyway)
MAX_POINTS = 2048


def sample_kind(x: np.ndarray, kind: str = "auto") -> str:
    """``kind`` if given, else a guess from ``x``'s shape."""
    if kind != "auto":
        if kind not in KINDS:
            raise ValueError(f"unknown preview kind {kind!r}; known: {', '.join(KINDS)}")
        return kind
    if x.ndim == 2 and x.shape[1] == 3 and x.shape[0] > 16:
        return "points"
    if x.ndim == 2 and x.shape[0] <= 16:
        return "series"
    if x.ndim in (3, 4):
        return "volume"
    return "image" if x.ndim == 2 else "series"


def rows_per_sample(kind: str) -> int:
    """Audio takes two panel rows per sample (waveform above its log-mel spectrogram)."""
    return 2 if kind == "audio" else 1


def _style(ax: plt.Axes, title: str) -> None:
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)


def _points(ax: plt.Axes, x: np.ndarray, title: str) -> None:
    pts = x[:: max(1, len(x) // MAX_POINTS)]
    if getattr(ax, "name", "") == "3d":
        # y is up in the furniture models; matplotlib's vertical axis is z
        ax.scatter(pts[:, 0], pts[:, 2], pts[:, 1], s=1, c=pts[:, 1], cmap="viridis", depthshade=False)
        lo, hi = float(pts.min()), float(pts.max())
        ax.set_xlim(lo, hi), ax.set_ylim(lo, hi), ax.set_zlim(lo, hi)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=20, azim=-60)
        ax.set_xticklabels([]), ax.set_yticklabels([]), ax.set_zticklabels([])
    else:  # a flat axis someone else made: a front view
        ax.scatter(pts[:, 0], pts[:, 1], s=1, c=pts[:, 2], cmap="viridis")
        ax.set_aspect("equal")
    _style(ax, title)


def log_mel_db(y: np.ndarray, sample_rate: int, n_mels: int = 64) -> np.ndarray:
    """Log-mel power spectrogram in dB (librosa), ``[n_mels, frames]``."""
    import librosa

    n_fft = min(1024, 1 << int(np.log2(max(32, sample_rate // 32))))
    mel = librosa.feature.melspectrogram(
        y=np.asarray(y, dtype=np.float32).ravel(),
        sr=sample_rate,
        n_fft=n_fft,
        hop_length=n_fft // 4,
        n_mels=n_mels,
    )
    return librosa.power_to_db(mel, ref=np.max)


def draw_sample(
    ax: plt.Axes, x: np.ndarray, title: str, kind: str = "auto", sample_rate: int | None = None
) -> None:
    """Draw one sample on ``ax`` (for ``points``, a 3D axis gives the 3D view, see :func:`new_axes`).

    For ``audio`` this draws the waveform; :func:`draw_spectrogram` draws its log-mel panel.
    """
    x = np.asarray(x)
    kind = sample_kind(x, kind)
    if kind == "points":
        _points(ax, x, title)
        return
    if kind == "audio":
        y = x.ravel()
        t = np.arange(len(y)) / (sample_rate or 1)
        ax.plot(t, y, lw=0.5)
        ax.set_xlabel("s" if sample_rate else "sample", fontsize=6)
    elif kind == "series":
        for ch in np.atleast_2d(x):
            ax.plot(ch, lw=0.8)
    elif kind in ("volume", "image"):
        if x.ndim == 4:  # [channels, D, H, W] patch or stacked frames: the first one
            x = x[0]
        if x.ndim == 3:  # volume or [C, H, W]: the middle slice
            x = x[x.shape[0] // 2]
        ax.imshow(x, cmap="gray", aspect="auto" if kind == "image" else None)
    _style(ax, title)


def draw_spectrogram(ax: plt.Axes, x: np.ndarray, title: str, sample_rate: int) -> None:
    """The log-mel spectrogram (dB) of a waveform ``x``, time in seconds on the horizontal axis."""
    db = log_mel_db(x, sample_rate)
    seconds = np.asarray(x).size / sample_rate
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=(0.0, seconds, 0.0, db.shape[0]))
    ax.set_ylabel("mel bin", fontsize=6)
    _style(ax, title)


def new_axes(fig: plt.Figure, n_rows: int, n_cols: int, index: int, kind: str) -> plt.Axes:
    """Subplot ``index`` (1-based) of an ``n_rows × n_cols`` grid, 3D for point clouds."""
    return fig.add_subplot(n_rows, n_cols, index, projection="3d" if kind == "points" else None)


def png(fig: plt.Figure, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def preview_png(
    samples: list[tuple[str, np.ndarray, list[np.ndarray]]],
    kind: str = "auto",
    sample_rate: int | None = None,
) -> bytes:
    """``[(id, original, [view0, view1, ...]), ...]`` → PNG bytes: one row per sample (two for audio)."""
    kind = sample_kind(np.asarray(samples[0][1]), kind)
    if kind == "audio" and not sample_rate:
        kind = "series"  # no sample rate to put seconds and mel bands on: draw the waveform only
    per = rows_per_sample(kind)
    n_cols = 1 + max(len(v) for _, _, v in samples)
    n_rows = per * len(samples)
    height = 2.6 if kind == "points" else 2.0
    fig = plt.figure(figsize=(3 * n_cols, height * n_rows))
    for r, (rid, x, views) in enumerate(samples):
        for c, (v, title) in enumerate(
            [(x, f"{rid} (original)")] + [(v, f"view {i}") for i, v in enumerate(views)]
        ):
            index = r * per * n_cols + c + 1
            draw_sample(new_axes(fig, n_rows, n_cols, index, kind), v, title, kind, sample_rate)
            if kind == "audio":
                ax = new_axes(fig, n_rows, n_cols, index + n_cols, kind)
                draw_spectrogram(ax, v, "log-mel (dB)", sample_rate)
    fig.tight_layout()
    return png(fig)
