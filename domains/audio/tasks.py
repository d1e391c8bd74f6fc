"""Speech evaluation beside the shared probes: MFCC baseline, held-out speakers, synthetic → real.

Three protocols, each scored with a logistic-regression probe (standardised features) and 1-NN on
frozen features of every encoder and of MFCCs (librosa: 20 coefficients + deltas, mean and standard
deviation over time, the classic keyword-spotting baseline):

* ``split`` — the recipe's speaker split (probe fit on the training speakers, scored on the held-out
  test speakers), per test speaker too;
* ``loso`` — leave one speaker out over every labelled real speaker, the mean over folds; also split
  by language (``same_language``: held-out clips in a language some training speaker speaks;
  ``cross_language``: the rest). A label is a digit *value* whatever the language, so a clip in a
  language no training speaker speaks can only be recognised through words that sound alike across
  languages (tre/three/trois): there the probe measures cognates, not the encoder;
* ``synthetic_to_real`` — probe fit on the labelled synthetic (espeak-ng) clips only, scored on every
  real speaker: no real speech at all is used for fitting.

Real clips of another word set (``meta["task"]``, see ``SEPARATE_TASKS``) are scored by the same
protocols apart, under their own key: ``phonetic`` — the Asterisk spelling-alphabet words (alfa …
zulu), international words, so LOSO there measures speaker- and language-independent word
recognition, which the cross-lingual digits cannot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from domains.base import DomainResult, EvalContext, Row

#: synthetic clips used to fit the synthetic-to-real probe (a random subset when there are more)
MAX_SYNTHETIC = 3000


def mfcc_features(xs: list[np.ndarray], sample_rate: int, n_mfcc: int = 20) -> np.ndarray:
    """MFCC + delta, mean and std over time → ``[N, 4 * n_mfcc]``."""
    import librosa

    out = []
    for x in xs:
        m = librosa.feature.mfcc(y=x[0], sr=sample_rate, n_mfcc=n_mfcc, n_fft=256, hop_length=80, n_mels=40)
        d = librosa.feature.delta(m)
        out.append(np.concatenate([m.mean(1), m.std(1), d.mean(1), d.std(1)]))
    return np.asarray(out, dtype=np.float32)


def probe_scores(tr: np.ndarray, y_tr: np.ndarray, te: np.ndarray, y_te: np.ndarray) -> dict[str, Any]:
    """Test accuracy of a logistic-regression probe and of 1-NN, plus the per-row predictions."""
    logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    logreg.fit(tr, y_tr)
    pred = logreg.predict(te)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=1)).fit(tr, y_tr)
    return {
        "logreg": round(float(np.mean(pred == y_te)), 4),
        "knn": round(float(np.mean(knn.predict(te) == y_te)), 4),
        "pred": pred,
    }


def _label(row: Row) -> str | None:
    return row.get("label")


def _language(row: Row) -> str:
    """The clip's language without its region (``fr_CA`` -> ``fr``); ``""`` when unknown."""
    return str(row.get("meta", {}).get("language", "")).split("_")[0].split("-")[0].lower()


def language_split(hits: dict[str, np.ndarray], langs: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """LOSO accuracy over held-out clips whose language a training speaker of that fold speaks
    (``same_language``) and over the others (``cross_language``), with each one's clip count.

    ``hits[spk]``: per-clip correctness of the fold that held ``spk`` out; ``langs[spk]``: the
    language of each of those clips (``""``: unknown, counted as cross-language)."""
    same, cross = [], []
    for spk, h in hits.items():
        spoken = {lang for other, ls in langs.items() if other != spk for lang in ls if lang}
        for ok, lang in zip(h, langs[spk], strict=True):
            (same if lang in spoken else cross).append(bool(ok))
    return {
        name: {"logreg": round(float(np.mean(v)), 4) if v else None, "n": len(v)}
        for name, v in (("same_language", same), ("cross_language", cross))
    }


def _task(row: Row) -> str | None:
    """The labelled word set a real clip belongs to (``meta["task"]``: ``digits``, ``phonetic``);
    ``None`` for rows of sources that do not say (a folder or manifest of keywords)."""
    return row.get("meta", {}).get("task")


#: word sets scored apart from the main (digit) protocols, each under its own key of the metrics
SEPARATE_TASKS = ("phonetic",)


def evaluate_speech(ctx: EvalContext) -> DomainResult:
    rows = ctx.train_rows + ctx.test_rows
    real_all = [r for r in rows if _label(r) is not None and r["meta"].get("source") != "espeak"]
    synth_all = [r for r in ctx.train_rows if r["meta"].get("source") == "espeak" and r["meta"].get("word")]
    sr = int(real_all[0]["meta"].get("sample_rate", 8000)) if real_all else 8000
    # one embedding pass over every clip any protocol scores
    main = [r for r in real_all if _task(r) not in SEPARATE_TASKS]
    synth = _synthetic_probe_rows(synth_all, {_label(x) for x in main}, ctx.seed)
    all_rows = real_all + synth
    feats: dict[str, np.ndarray] = {"mfcc_logreg": mfcc_features([r["x"] for r in all_rows], sr)}
    for name, enc in ctx.encoders.items():
        feats[name] = ctx.embed(enc, [r["x"] for r in all_rows])
    index = {id(r): i for i, r in enumerate(all_rows)}

    metrics = _protocols(ctx, main, synth, feats, index)
    for task in SEPARATE_TASKS:
        real = [r for r in real_all if _task(r) == task]
        if real:
            metrics[task] = _protocols(ctx, real, [], feats, index)
    # whether any real labelled clip was a training row, i.e. could reach pretraining (unlabeled)
    real_ids = {id(r) for r in real_all}
    metrics["digits_pretrained"] = any(id(r) in real_ids for r in ctx.train_rows)
    return DomainResult(metrics=metrics, markdown=_markdown(metrics))


def _synthetic_probe_rows(synth: list[Row], real_labels: set[Any], seed: int) -> list[Row]:
    """The synthetic clips that fit the synthetic-to-real probe: only words that are real labels
    (a keyword the real set lacks cannot be scored), at most ``MAX_SYNTHETIC`` of them."""
    synth = [r for r in synth if r["meta"]["word"] in real_labels]
    if len(synth) > MAX_SYNTHETIC:
        keep = np.random.default_rng(seed).choice(len(synth), MAX_SYNTHETIC, replace=False)
        synth = [synth[i] for i in sorted(keep)]
    return synth


def _protocols(
    ctx: EvalContext, real: list[Row], synth: list[Row], feats: dict[str, np.ndarray], index: dict[int, int]
) -> dict[str, Any]:
    """The split, LOSO and synthetic-to-real protocols over one labelled word set ``real``."""
    real_ids = {id(r) for r in real}  # identity: rows hold arrays, so == would compare them
    real_train = [r for r in ctx.train_rows if id(r) in real_ids]
    real_test = [r for r in ctx.test_rows if id(r) in real_ids]
    if not real_train and any(r["meta"].get("probe_split") for r in real):
        # every real clip is a test row (kept out of pretraining): the reader's recorded speaker
        # split defines the split protocol's training and held-out persons
        real_train = [r for r in real if r["meta"].get("probe_split") == "train"]
        real_test = [r for r in real if r["meta"].get("probe_split") == "test"]

    def take(name: str, rs: list[Row]) -> np.ndarray:
        return feats[name][[index[id(r)] for r in rs]]

    y = {id(r): (_label(r) if id(r) in real_ids else r["meta"]["word"]) for r in real + synth}

    def labels(rs: list[Row]) -> np.ndarray:
        return np.array([y[id(r)] for r in rs])

    metrics: dict[str, Any] = {"split": {}, "loso": {}, "synthetic_to_real": {}}
    speakers = sorted({r["group"] for r in real})
    test_speakers = sorted({r["group"] for r in real_test})
    metrics["speakers"] = speakers
    metrics["test_speakers"] = test_speakers
    # each LOSO fold's held-out clips' languages, in the order the fold scores them
    languages = {spk: [_language(r) for r in real if r["group"] == spk] for spk in speakers}
    for name in feats:
        if real_train and real_test:
            s = probe_scores(
                take(name, real_train), labels(real_train), take(name, real_test), labels(real_test)
            )
            hit = s["pred"] == labels(real_test)
            groups = np.array([r["group"] for r in real_test])
            per = {spk: round(float(hit[groups == spk].mean()), 4) for spk in test_speakers}
            metrics["split"][name] = {"logreg": s["logreg"], "knn": s["knn"], "per_speaker": per}
        folds, hits = {}, {}
        for spk in speakers:
            tr = [r for r in real if r["group"] != spk]
            te = [r for r in real if r["group"] == spk]
            if len({_label(r) for r in tr}) >= 2:
                s = probe_scores(take(name, tr), labels(tr), take(name, te), labels(te))
                folds[spk] = {"logreg": s["logreg"], "knn": s["knn"]}
                hits[spk] = s["pred"] == labels(te)
        if folds:
            metrics["loso"][name] = {
                "logreg": round(float(np.mean([f["logreg"] for f in folds.values()])), 4),
                "knn": round(float(np.mean([f["knn"] for f in folds.values()])), 4),
                "per_speaker": {k: v["logreg"] for k, v in folds.items()},
                **language_split(hits, languages),
            }
        if synth and real:
            s = probe_scores(take(name, synth), labels(synth), take(name, real), labels(real))
            metrics["synthetic_to_real"][name] = {"logreg": s["logreg"], "knn": s["knn"]}
    metrics["n_real"], metrics["n_synthetic_probe"] = len(real), len(synth)
    return metrics


def _markdown(m: dict[str, Any]) -> str:
    out = _section(m, "## Speech digits on real speakers (held-out speakers)\n", m.get("digits_pretrained"))
    if "phonetic" in m:
        out += "\n" + _section(
            m["phonetic"],
            "## Spelling-alphabet words (`phonetic/`, alfa…zulu) on real speakers\n\n"
            "International code words, so unlike a digit's name they can be recognised in a language "
            "no training person speaks: a speaker-independent keyword task (26 classes, chance 0.038).\n",
            m.get("digits_pretrained"),
            cognates=False,
        )
    return out


def _section(m: dict[str, Any], title: str, pretrained: bool | None, cognates: bool = True) -> str:
    """One word set's protocol tables (``pretrained``: whether its clips reached pretraining;
    ``cognates``: say that a cross-language label is recognisable only through cognates)."""
    names = list(m["loso"] or m["split"] or m["synthetic_to_real"])

    def cell(section: str, name: str, key: str) -> str:
        v = m[section].get(name, {}).get(key)
        return "" if v is None else f"{v:.3f}"

    lines = [
        title,
        f"{m['n_real']} real clips from speakers {', '.join(m['speakers'])}; recipe test speakers: "
        f"{', '.join(m['test_speakers'])}. "
        + (
            f"`synthetic→real` fits the probe on {m['n_synthetic_probe']} espeak-ng clips only. "
            if m["n_synthetic_probe"]
            else ""
        )
        + (
            "No real labelled clip was a pretraining row (every one is a test row; the split protocol "
            "follows the recipe's speaker split).\n"
            if pretrained is False
            else "LOSO folds whose speaker was a *training* speaker saw that speaker's clips "
            "(unlabeled) during pretraining.\n"
        ),
        "| features | split logreg | split 1-NN | LOSO logreg | LOSO 1-NN | synth→real logreg | synth→real 1-NN |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in names:
        lines.append(
            f"| {n} | {cell('split', n, 'logreg')} | {cell('split', n, 'knn')} | {cell('loso', n, 'logreg')} | "
            f"{cell('loso', n, 'knn')} | {cell('synthetic_to_real', n, 'logreg')} | "
            f"{cell('synthetic_to_real', n, 'knn')} |"
        )
    if m["loso"]:
        spk = m["speakers"]
        lines += [
            "",
            "LOSO logistic-regression accuracy per held-out speaker:\n",
            "| features | " + " | ".join(spk) + " |",
            "|---" * (len(spk) + 1) + "|",
        ]
        for n in names:
            per = m["loso"].get(n, {}).get("per_speaker", {})
            lines.append(f"| {n} | " + " | ".join(f"{per.get(s, float('nan')):.2f}" for s in spk) + " |")
        first = m["loso"][names[0]]
        if first.get("same_language", {}).get("n") and first.get("cross_language", {}).get("n"):
            lines += [
                "",
                "LOSO by language: held-out clips in a language some training speaker speaks, and the "
                "rest. Same language: "
                f"{first['same_language']['n']} clips; cross-language: {first['cross_language']['n']}."
                + (
                    " A digit's label is its value in any language, so a cross-language digit is "
                    "recognisable only through words that sound alike across languages."
                    if cognates
                    else ""
                )
                + "\n",
                "| features | same-language logreg | cross-language logreg |",
                "|---|---|---|",
            ]
            for n in names:
                lo = m["loso"].get(n, {})
                lines.append(
                    f"| {n} | {lo.get('same_language', {}).get('logreg') or 0:.3f} | "
                    f"{lo.get('cross_language', {}).get('logreg') or 0:.3f} |"
                )
    return "\n".join(lines) + "\n"
