"""Linear heads on a frozen encoder, solved to the optimum instead of approached by SGD.

With the encoder frozen, a linear head on its cached embeddings is multinomial logistic regression:
a convex problem with one optimum, which L-BFGS reaches in a few hundred iterations on the full
batch. A few hundred SGD steps at a head learning rate stop short of it. The L2 strength is
chosen on dev, as SentEval does for its probes (Conneau & Kiela 2018), and SetFit fits its head the
same way (Tunstall et al. 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from sentence_mtl.training.inputs import ModelInputs, TokenizedSplit

# Inverse L2 strengths tried, from strong to weak regularisation.
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
MAX_ITERATIONS = 2000


@dataclass(frozen=True)
class LinearSolution:
    """A head's weights ``(classes, dim)`` and bias, the C that won, and its dev score (None: no dev)."""

    weight: np.ndarray
    bias: np.ndarray
    C: float
    dev_score: float | None


def dev_metric(objective: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    if objective == "accuracy":
        return float(accuracy_score(truth, predicted))
    return float(f1_score(truth, predicted, average="macro", zero_division=0))


def solve_linear_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    n_classes: int,
    dev: tuple[np.ndarray, np.ndarray] | None = None,
    objective: str = "macro_f1",
    balanced: bool = False,
) -> LinearSolution:
    """The logistic-regression head for each C of :data:`C_GRID`; the best on dev by ``objective`` wins.

    Ties go to the stronger regularisation; without dev, scikit-learn's default C = 1 is used. The
    weights are laid out as the logits of ``n_classes`` units, also for two classes, where
    scikit-learn fits one vector.
    """
    solutions = []
    for strength in C_GRID if dev is not None else (1.0,):
        model = LogisticRegression(
            C=strength, max_iter=MAX_ITERATIONS, class_weight="balanced" if balanced else None
        )
        model.fit(train_x, train_y)
        score = dev_metric(objective, dev[1], model.predict(dev[0])) if dev is not None else None
        solutions.append(LinearSolution(*_logit_layout(model, n_classes, train_x.shape[1]), strength, score))
    # The first best wins a tie: the stronger regularisation.
    return max(solutions, key=lambda solution: solution.dev_score or 0.0)


def solve_heads(
    inputs: ModelInputs,
    train: dict[str, TokenizedSplit],
    dev: dict[str, TokenizedSplit],
    class_counts: dict[str, int],
    objective: str,
    balanced: bool,
) -> dict[str, LinearSolution]:
    """Each head of ``class_counts`` solved on its task's cached train embeddings; C chosen on dev if any."""
    solutions = {}
    for task, n_classes in class_counts.items():
        data, dev_data = train[task], dev.get(task)
        held_out = None
        if dev_data is not None:
            held_out = (inputs.embeddings("dev", task, dev_data).cpu().numpy(), dev_data.labels.numpy())
        train_x = inputs.embeddings("train", task, data).cpu().numpy()
        solutions[task] = solve_linear_head(
            train_x, data.labels.numpy(), n_classes, held_out, objective=objective, balanced=balanced
        )
    return solutions


def _logit_layout(model: LogisticRegression, n_classes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """One logit per class. A binary model's ``w·x + b`` becomes logits ``∓(w·x + b)/2``: same softmax."""
    weight = np.zeros((n_classes, dim), dtype=np.float32)
    bias = np.zeros(n_classes, dtype=np.float32)
    classes = model.classes_
    if len(classes) == 2:
        half_w, half_b = model.coef_[0] / 2, model.intercept_[0] / 2
        weight[classes[0]], bias[classes[0]] = -half_w, -half_b
        weight[classes[1]], bias[classes[1]] = half_w, half_b
    else:
        weight[classes] = model.coef_
        bias[classes] = model.intercept_
    return weight, bias
