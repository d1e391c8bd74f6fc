"""The audio domain: validation reasons, views, the log-mel CNN, fingerprints and its evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domains import EvalContext, get_domain
from domains.audio.encoders import AudioCNN
from domains.audio.readers import read_source
from domains.audio.tasks import evaluate_speech
from domains.audio.views import POLICIES, STEPS, apply_policy
from domains.base import ViewPolicy

SR = 8000


@pytest.fixture(scope="module")
def audio():  # noqa: ANN201
    return get_domain("audio")


@pytest.fixture(scope="module")
def speech() -> list[dict]:
    return list(read_source("espeak", languages=["en-us"], variants=["m1", "f3"], repeats=1, sample_rate=SR))


def _row(x: np.ndarray) -> dict:
    return {"id": "r", "x": x.astype(np.float32), "label": None, "split": "train", "group": None, "meta": {}}


def test_validate_reasons(audio, speech) -> None:  # noqa: ANN001
    x = speech[0]["x"]
    assert audio.validate(_row(x)) is None
    assert audio.validate(_row(np.zeros((1, 0)))).startswith("empty")
    assert audio.validate(_row(np.zeros((2, 100)))).startswith("expected a mono")
    nan = x.copy()
    nan[0, 10] = np.nan
    assert audio.validate(_row(nan)).startswith("non-finite")
    assert audio.validate(_row(x * 1e-4)).startswith("silent")
    assert audio.validate(_row(np.clip(x * 50, -1, 1))).startswith("clipped")


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_step_keeps_a_finite_mono_waveform_and_changes_it(step: str, speech) -> None:  # noqa: ANN001
    x = speech[3]["x"]
    y = apply_policy(x, np.random.default_rng(1), [{"name": step}], SR)
    assert y.dtype == np.float32 and y.ndim == 2 and y.shape[0] == 1 and np.isfinite(y).all()
    if step != "random_crop":
        assert y.shape == x.shape
    else:
        assert y.shape[1] < x.shape[1]
    assert not np.array_equal(y, x)


def test_named_policies_and_rate_suffix(audio, speech) -> None:  # noqa: ANN001
    x = speech[0]["x"]
    rng = np.random.default_rng(0)
    for name in POLICIES:
        assert np.isfinite(audio.augment(x, rng, ViewPolicy(name))).all()
    # COLA: two segments of the same clip; the crop length follows the sample rate
    assert audio.augment(x, rng, ViewPolicy("cola")).shape == (1, int(0.6 * SR))
    assert audio.augment(x, rng, ViewPolicy("cola@4000")).shape == (1, int(0.6 * 4000))
    with pytest.raises(KeyError, match="unknown audio view policy"):
        audio.augment(x, rng, ViewPolicy("nope"))
    with pytest.raises(KeyError, match="unknown audio augmentation"):
        audio.augment(x, rng, ViewPolicy("custom", {"steps": [{"name": "warp"}]}))


def test_encoder_logmel_in_model_gradients_and_variable_length(audio) -> None:  # noqa: ANN001
    enc = audio.build_encoder(
        {"name": "byola_cnn", "sample_rate": SR, "channels": 8, "hidden_dim": 32, "out_dim": 16}
    )
    assert isinstance(enc, AudioCNN) and enc.embedding_dim == 16
    # the mel filterbank is a buffer: it follows .to(device) and is not a trained parameter
    assert "frontend.mel_fb" in dict(enc.named_buffers())
    assert not any("mel" in n for n, _ in enc.named_parameters())
    batch = audio.collate(
        [np.random.default_rng(0).normal(0, 0.1, (1, n)).astype(np.float32) for n in (8000, 6000)]
    )
    assert batch.shape == (2, 1, 8000) and float(batch[1, 0, 6000:].abs().sum()) == 0.0
    out = enc(batch)
    assert out.shape == (2, 16)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    assert enc.eval()(torch.zeros(1, 1, 4800).normal_()).shape == (1, 16)  # a COLA crop: pooled over time


def test_fingerprint_separates_words_not_noise(audio, speech) -> None:  # noqa: ANN001
    fp = audio.fingerprint([r["x"] for r in speech])
    assert fp.shape == (len(speech), 128)
    fp /= np.linalg.norm(fp, axis=1, keepdims=True)
    cos = fp @ fp.T
    np.fill_diagonal(cos, 0)
    assert cos.max() < 0.999  # no two different clips are near duplicates at the curate threshold
    noisy = apply_policy(
        speech[0]["x"], np.random.default_rng(0), [{"name": "noise", "snr_db": [40, 40]}], SR
    )
    f2 = audio.fingerprint([noisy])[0]
    assert float(f2 @ fp[0] / np.linalg.norm(f2)) > 0.99


def test_evaluate_reports_mfcc_baseline_loso_and_synthetic_to_real(speech) -> None:  # noqa: ANN001
    # stand-in "real" speakers: two espeak voices with labels (the real Asterisk set is in the e2e test)
    real = []
    for r in speech:
        spk = r["meta"]["voice"]
        real.append(
            {
                **r,
                "id": "real/" + r["id"],
                "label": r["meta"]["word"],
                "group": spk,
                "split": "test" if spk.endswith("f3") else "train",
                "meta": {"sample_rate": SR},
            }
        )
    synth = list(read_source("espeak", languages=["en-us"], variants=["m3", "f2"], repeats=2, sample_rate=SR))
    enc = AudioCNN(sample_rate=SR, channels=8, hidden_dim=32, out_dim=16).eval()

    def embed(e, xs):  # noqa: ANN001, ANN202
        with torch.no_grad():
            return e(get_domain("audio").collate(xs)).numpy()

    ctx = EvalContext(
        recipe={},
        train_rows=synth + [r for r in real if r["split"] == "train"],
        test_rows=[r for r in real if r["split"] == "test"],
        encoders={"pretrained": enc, "random_init": enc},
        embed=embed,
    )
    res = evaluate_speech(ctx)
    m = res.metrics
    assert m["test_speakers"] == ["en-us+f3"] and m["n_real"] == 20 and m["n_synthetic_probe"] == 40
    for section in ("split", "loso", "synthetic_to_real"):
        assert set(m[section]) == {"mfcc_logreg", "pretrained", "random_init"}
        assert all(0.0 <= v["logreg"] <= 1.0 for v in m[section].values())
    # MFCCs of the same engine's digits are easy: far above chance (0.1)
    assert m["synthetic_to_real"]["mfcc_logreg"]["logreg"] >= 0.5

    # another labelled word set (the spelling alphabet) is scored by the same protocols, apart:
    # its labels never mix into the digits' probes
    words = [
        {**r, "id": r["id"] + "/w", "label": "w" + r["label"], "meta": {**r["meta"], "task": "phonetic"}}
        for r in real
    ]
    ctx.train_rows += [r for r in words if r["split"] == "train"]
    ctx.test_rows += [r for r in words if r["split"] == "test"]
    both = evaluate_speech(ctx).metrics
    assert both["n_real"] == 20 and both["loso"] == m["loso"] and both["split"] == m["split"]
    ph = both["phonetic"]
    assert ph["n_real"] == 20 and ph["n_synthetic_probe"] == 0 and ph["synthetic_to_real"] == {}
    assert set(ph["loso"]) == {"mfcc_logreg", "pretrained", "random_init"}
    assert ph["loso"]["mfcc_logreg"]["logreg"] == m["loso"]["mfcc_logreg"]["logreg"]  # same clips, labels
    assert "Spelling-alphabet words" in evaluate_speech(ctx).markdown
    assert "mfcc_logreg" in res.markdown and "LOSO" in res.markdown


def test_loso_by_language_counts_a_clip_as_same_language_only_when_a_training_speaker_speaks_it() -> None:
    from domains.audio.tasks import language_split

    hits = {"A": np.array([True, False]), "B": np.array([True, True]), "C": np.array([False, True])}
    # A speaks English alone; B and C both speak Italian: their folds have a same-language speaker
    langs = {"A": ["en", "en"], "B": ["it", "it"], "C": ["it", "it"]}
    out = language_split(hits, langs)
    assert out["same_language"] == {"logreg": 0.75, "n": 4}
    assert out["cross_language"] == {"logreg": 0.5, "n": 2}
    # a speaker's own language does not count: with C gone, B's Italian is cross-language
    out = language_split({"A": hits["A"], "B": hits["B"]}, {"A": langs["A"], "B": langs["B"]})
    assert out["same_language"] == {"logreg": None, "n": 0} and out["cross_language"]["n"] == 4
