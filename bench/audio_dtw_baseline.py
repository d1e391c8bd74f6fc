"""The classic isolated-word baseline beside the audio payoff: MFCC templates matched by DTW, 1-NN.

``python -m bench.audio_dtw_baseline`` scores the real Asterisk evaluation words (digits 0-9 and the
spelling alphabet, read exactly as the audio recipe reads them: ``read_source("asterisk", ...)``) by
nearest-template matching with dynamic time warping over per-clip normalised MFCCs (librosa:
13 coefficients, 10 ms hop), with the audio recipe's two protocols: leave one person out, and the
speaker split (templates from Allison, Menardi and IvrvoiceRU, scored on Carlo and June).

Why: the bench's MFCC baseline (``domains/audio/tasks.py``) pools MFCC statistics over time, which
keeps no word order; template matching does, needs no training at all, and is what isolated-word
recognition used before learned features. No encoder is involved, so the figures are the same on
every run; the seconds are timings (``meta``).

Writes ``bench/results/audio_dtw_baseline.{json,md}``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._meta import BenchRun, _atomic_write

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "audio_dtw_baseline.json"
SR = 8000
#: the audio recipe's (pipelines/audio-speech.yaml) split protocol's held-out persons
TEST_PERSONS = ("Carlo", "June")


def mfcc_template(x: np.ndarray, sr: int = SR) -> np.ndarray:
    """``[13, frames]`` MFCCs of a ``[1, samples]`` clip, silence trimmed, each coefficient
    normalised over the clip (cepstral mean and variance normalisation: removes the channel)."""
    import librosa

    y, _ = librosa.effects.trim(x[0], top_db=30)
    m = librosa.feature.mfcc(y=y if y.size >= 256 else x[0], sr=sr, n_mfcc=13, n_fft=256, hop_length=80)
    return (m - m.mean(1, keepdims=True)) / (m.std(1, keepdims=True) + 1e-6)


def dtw_distances(templates: list[np.ndarray]) -> np.ndarray:
    """Symmetric ``[N, N]`` DTW costs, each normalised by the two sequences' total length."""
    import librosa

    n = len(templates)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            cost = librosa.sequence.dtw(templates[i], templates[j], metric="euclidean")[0][-1, -1]
            d[i, j] = d[j, i] = cost / (templates[i].shape[1] + templates[j].shape[1])
    return d


def nearest_template_accuracy(
    d: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray
) -> float:
    """1-NN accuracy of the ``test`` rows against the ``train`` rows under distances ``d``."""
    sub = d[np.ix_(test, train)]
    pred = labels[train][sub.argmin(axis=1)]
    return float(np.mean(pred == labels[test]))


def score_word_set(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """LOSO (mean over persons, and per person) and the speaker split for one labelled word set."""
    labels = np.array([r["label"] for r in rows])
    persons = np.array([r["group"] for r in rows])
    d = dtw_distances([mfcc_template(r["x"]) for r in rows])
    per = {
        p: round(
            nearest_template_accuracy(d, labels, np.flatnonzero(persons != p), np.flatnonzero(persons == p)),
            4,
        )
        for p in sorted(set(persons))
    }
    held = np.isin(persons, TEST_PERSONS)
    return {
        "n": len(rows),
        "classes": len(set(labels)),
        "loso": round(float(np.mean(list(per.values()))), 4),
        "loso_per_person": per,
        "split": round(nearest_template_accuracy(d, labels, np.flatnonzero(~held), np.flatnonzero(held)), 4),
    }


def main() -> dict[str, Any]:
    from domains.audio.readers import read_source

    run = BenchRun()
    t0 = time.perf_counter()
    rows = list(read_source("asterisk", words=["digits", "phonetic"], digits_in_pretraining=False))
    result: dict[str, Any] = {
        "method": "MFCC (13, CMVN per clip) + DTW, 1-nearest template; no training, no encoder",
        "protocols": "loso: leave one person out, mean over the 5 persons; split: templates from Allison, "
        "Menardi, IvrvoiceRU, scored on Carlo + June (the audio recipe's test persons)",
        "word_sets": {
            task: score_word_set([r for r in rows if r["meta"]["task"] == task])
            for task in ("digits", "phonetic")
        },
        "seconds": round(time.perf_counter() - t0, 1),  # evaluated after the word sets above
    }
    print(json.dumps(result["word_sets"], indent=2))
    if run.write_json(OUT, result):
        _atomic_write(OUT.with_suffix(".md"), render_md(result) + run.footer())
    return result


def render_md(res: dict[str, Any]) -> str:
    lines = [
        "# Audio: MFCC + DTW template matching (the classic isolated-word baseline)",
        "",
        f"Written by `python -m bench.audio_dtw_baseline`. {res['method']}. {res['protocols']}. "
        f"{res['seconds']} s.",
        "",
        "| word set | clips | classes (chance) | LOSO | speaker split | per person (LOSO) |",
        "|---|---|---|---|---|---|",
    ]
    for task, s in res["word_sets"].items():
        per = ", ".join(f"{p} {v:.2f}" for p, v in s["loso_per_person"].items())
        lines.append(
            f"| {task} | {s['n']} | {s['classes']} ({1 / s['classes']:.3f}) | {s['loso']:.3f} | {s['split']:.3f} | {per} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
