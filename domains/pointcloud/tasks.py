"""The point-cloud field's evaluation protocol on frozen global features.

- **Linear SVM** (CrossPoint / OcCo / Point-BERT's ModelNet40 protocol): ``LinearSVC`` on
  standardised features, C picked by stratified 5-fold cross-validation on the training split only.
- **kNN**: cosine-similarity majority vote over the ``k`` nearest training features.
- **Few-shot** (CrossPoint, Point-BERT): ``N``-way ``K``-shot episodes; ``K`` support shapes per class
  drawn from the training split and up to ``queries`` query shapes per class from the test split; a
  linear SVM on the support set; mean ± std accuracy over ``episodes`` seeded episodes.

Each runs on the pretrained encoder, a random-init encoder and, when the finetune stage saved it,
the supervised encoder (random init trained end to end on all training labels).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from joblib import parallel_config
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

SVM_CS = (0.001, 0.01, 0.1, 1.0, 10.0)


def _svm(C: float = 1.0, seed: int = 0) -> Any:
    # liblinear visits the samples in a random order: seeded here, so a fit does not depend on
    # numpy's global random state (nor on which thread of the grid search draws from it first).
    # The dual solver always: sklearn's "auto" takes the primal (Newton) when rows outnumber
    # columns, but frozen features are nearly separable at the grid's large C, where the primal
    # crawls (demo, 377 x 256, 13 classes: C=10 took 2,389 Newton steps, 5.5 s a fit, against 1.1 s
    # for the dual); the squared-hinge objective has one minimum, so both reach the same model
    # (the demo's three searches chose the same C and scored the same test accuracy, 47 s -> 18 s).
    return make_pipeline(StandardScaler(), LinearSVC(C=C, dual=True, max_iter=20000, random_state=seed))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def linear_svm_accuracy(
    tr: np.ndarray, ytr: np.ndarray, te: np.ndarray, yte: np.ndarray, seed: int = 0
) -> tuple[float, float]:
    """(test accuracy, chosen C) of a linear SVM with C cross-validated on the training split."""
    folds = min(5, int(np.bincount(ytr).min()))
    if folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        search = GridSearchCV(_svm(seed=seed), {"linearsvc__C": list(SVM_CS)}, cv=cv, n_jobs=_cores())
        # The 25 fits (5 C x 5 folds) are liblinear calls, which release the GIL: threads run them
        # on every core without the process pool's start-up and copies. The demo's three encoders'
        # searches took 82 s one fit after another on 2 cores (80 % of the evaluate stage).
        with parallel_config(backend="threading"):
            search.fit(tr, ytr)
        model, C = search.best_estimator_, float(search.best_params_["linearsvc__C"])
    else:
        model, C = _svm(seed=seed).fit(tr, ytr), 1.0
    return float((model.predict(te) == yte).mean()), C


def knn_accuracy(tr: np.ndarray, ytr: np.ndarray, te: np.ndarray, yte: np.ndarray, k: int = 5) -> float:
    model = KNeighborsClassifier(n_neighbors=min(k, len(ytr)), metric="cosine").fit(tr, ytr)
    return float((model.predict(te) == yte).mean())


def few_shot_accuracy(
    tr: np.ndarray,
    ytr: np.ndarray,
    te: np.ndarray,
    yte: np.ndarray,
    ways: int = 5,
    shots: int = 10,
    queries: int = 20,
    episodes: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean and std accuracy over ``episodes`` N-way K-shot episodes (support: train, queries: test).

    Only classes with at least ``shots`` training and one test shape take part; ``ways`` is capped by
    their number (reported as ``ways`` in the result).
    """
    eligible = [c for c in np.unique(ytr) if (ytr == c).sum() >= shots and (yte == c).sum() >= 1]
    ways = min(ways, len(eligible))
    if ways < 2:
        return {"mean": float("nan"), "std": float("nan"), "ways": ways, "shots": shots, "episodes": 0}
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(episodes):
        classes = rng.choice(eligible, size=ways, replace=False)
        s_idx, q_idx, s_y, q_y = [], [], [], []
        for j, c in enumerate(classes):
            s = rng.choice(np.flatnonzero(ytr == c), size=shots, replace=False)
            pool = np.flatnonzero(yte == c)
            q = rng.choice(pool, size=min(queries, len(pool)), replace=False)
            s_idx += s.tolist()
            q_idx += q.tolist()
            s_y += [j] * len(s)
            q_y += [j] * len(q)
        model = _svm(seed=seed).fit(tr[s_idx], np.array(s_y))
        accs.append(float((model.predict(te[q_idx]) == np.array(q_y)).mean()))
    return {
        "mean": float(np.mean(accs)),
        "std": float(np.std(accs)),
        "ways": ways,
        "shots": shots,
        "episodes": episodes,
    }


def load_supervised(models_dir: str, build: Any) -> Any | None:
    """The finetune stage's supervised encoder (random init, full fine-tune), or ``None``.

    Read here from its safetensors + config.json (domains never import stages)."""
    path = os.path.join(models_dir, "finetuned", "random_init-full")
    if "://" in models_dir or not os.path.isfile(os.path.join(path, "encoder.safetensors")):
        return None
    from safetensors.torch import load_file

    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    encoder = build(config["encoder"])
    encoder.load_state_dict(load_file(os.path.join(path, "encoder.safetensors")))
    return encoder.eval()


def markdown_table(results: dict[str, dict[str, Any]], n_train: int, n_test: int, n_classes: int) -> str:
    fs = next(iter(results.values()))["few_shot"]
    head = f"{fs['ways']}-way {fs['shots']}-shot ({fs['episodes']} episodes)"
    lines = [
        "\n## Point-cloud protocol (frozen global features, test accuracy)\n",
        f"{n_train} training / {n_test} test shapes, {n_classes} classes. Linear SVM as CrossPoint/OcCo "
        "(C cross-validated on the training split), cosine kNN, few-shot episodes with support from "
        "the training split and queries from the test split (mean ± std).\n",
        f"| encoder | linear SVM | kNN | {head} |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        f = r["few_shot"]
        lines.append(
            f"| {name} | {r['linear_svm']:.4f} | {r['knn']:.4f} | {f['mean']:.4f} ± {f['std']:.4f} |"
        )
    return "\n".join(lines) + "\n"
