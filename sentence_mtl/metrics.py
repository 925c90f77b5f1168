"""Classification metrics for one task, as plain JSON-serialisable Python values.

Labels are indices into the task's label list. Every class in that list is scored, even one
that is absent from ``y_true`` and ``y_pred``: its F1 is 0 (``zero_division=0``), which lowers
macro-F1. That keeps the numbers comparable across splits and runs, and the confusion matrix
always ``len(labels) × len(labels)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from sentence_mtl.errors import InvalidInputError


def _as_label_ids(name: str, values: Sequence[int] | np.ndarray, labels: list[str]) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise InvalidInputError(
            f"{name} must be a non-empty 1-D sequence of label indices, got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise InvalidInputError(f"{name} must hold integer label indices, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= len(labels):
        raise InvalidInputError(
            f"{name} holds label indices outside 0..{len(labels) - 1}; the {len(labels)} labels are "
            f"{', '.join(labels)}"
        )
    return array


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, a per-class report and the confusion matrix (rows true, columns predicted)."""
    if not labels:
        raise InvalidInputError("labels is empty; pass the task's label names")
    true = _as_label_ids("y_true", y_true, labels)
    pred = _as_label_ids("y_pred", y_pred, labels)
    if true.shape != pred.shape:
        raise InvalidInputError(
            f"y_true has {true.size} labels but y_pred has {pred.size}; pass one prediction per row"
        )
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(true, pred, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(true, pred)),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(true, pred, labels=ids).tolist(),
    }


def majority_baseline(
    train_labels: Sequence[int] | np.ndarray, eval_labels: Sequence[int] | np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """Scores of always predicting the most frequent training class (ties: the first in label order).

    The floor a trained head must beat; on an imbalanced split, accuracy alone can look good here.
    """
    train = _as_label_ids("train_labels", train_labels, labels)
    truth = _as_label_ids("eval_labels", eval_labels, labels)
    majority = int(np.bincount(train, minlength=len(labels)).argmax())
    scores = classification_metrics(truth, np.full_like(truth, majority), labels)
    return {"label": labels[majority], "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}
