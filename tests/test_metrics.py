"""Metrics: hand-computed values, agreement with scikit-learn, fixed shapes, and the majority baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from sentence_mtl.errors import InvalidInputError
from sentence_mtl.metrics import classification_metrics, majority_baseline

LABELS = ["a", "b", "c"]


def test_tiny_example_matches_hand_computation() -> None:
    # true: a a b b c ; predicted: a b b b a
    metrics = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], LABELS)
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["per_class"] == {
        "a": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},  # 1 of 2 predicted a is right
        "b": {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2},
        "c": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},  # never predicted: zero_division=0
    }
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # rows true, columns predicted


def test_agrees_with_scikit_learn_on_random_labels() -> None:
    rng = np.random.default_rng(0)
    labels = [f"class{i}" for i in range(6)]
    y_true, y_pred = rng.integers(0, 6, size=500), rng.integers(0, 6, size=500)
    metrics = classification_metrics(y_true, y_pred, labels)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert sum(report["support"] for report in metrics["per_class"].values()) == 500


def test_absent_class_keeps_full_shape_and_counts_as_zero_f1() -> None:
    metrics = classification_metrics([0, 1, 1], [0, 1, 0], ["a", "b", "c", "d"])
    assert np.array(metrics["confusion_matrix"]).shape == (4, 4)
    assert metrics["confusion_matrix"][2:] == [[0, 0, 0, 0], [0, 0, 0, 0]]
    assert metrics["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # a: P 1/2 R 1 → 2/3; b: P 1 R 1/2 → 2/3; c, d: 0 → macro over all four labels
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 4)


def test_result_is_plain_json() -> None:
    metrics = classification_metrics(np.array([0, 1, 2]), np.array([0, 2, 2]), LABELS)
    assert json.loads(json.dumps(metrics)) == metrics
    assert type(metrics["accuracy"]) is float
    assert type(metrics["per_class"]["a"]["support"]) is int
    assert type(metrics["confusion_matrix"][0][0]) is int


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([0, 1], [0], "y_true has 2 labels but y_pred has 1"),
        ([], [], "non-empty 1-D sequence"),
        ([0, 3], [0, 1], "y_true holds label indices outside 0..2"),
        ([0, 1], [-1, 1], "y_pred holds label indices outside 0..2"),
        ([0.0, 1.0], [0, 1], "integer label indices"),
    ],
)
def test_bad_inputs_are_rejected(y_true: list, y_pred: list, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        classification_metrics(y_true, y_pred, LABELS)


def test_majority_baseline_predicts_the_most_frequent_training_class() -> None:
    baseline = majority_baseline([0, 1, 1, 2], [1, 1, 0, 2], LABELS)
    assert baseline["label"] == "b"
    assert baseline["accuracy"] == 0.5
    # b: precision 2/4, recall 1 → F1 2/3; a and c are never predicted → 0
    assert baseline["macro_f1"] == pytest.approx((2 / 3) / 3)


def test_majority_baseline_breaks_ties_by_label_order() -> None:
    assert majority_baseline([2, 2, 1, 1], [1], LABELS)["label"] == "b"
