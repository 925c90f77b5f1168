"""The frozen path's exact head: multinomial logistic regression, laid out as the head's logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from sentence_mtl.training.convex import C_GRID, solve_linear_head


def blobs(n_classes: int, seed: int = 0, n: int = 60, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(n_classes, dim))
    labels = rng.integers(0, n_classes, size=n)
    return (centres[labels] + rng.normal(0, 1, size=(n, dim))).astype(np.float32), labels


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_the_head_gives_scikit_learns_probabilities_at_the_chosen_c(n_classes: int) -> None:
    x, y = blobs(n_classes)
    dev_x, dev_y = blobs(n_classes, seed=1)
    solution = solve_linear_head(x, y, n_classes, (dev_x, dev_y))
    assert solution.C in C_GRID and solution.dev_score is not None
    reference = LogisticRegression(C=solution.C, max_iter=2000).fit(x, y)
    ours = softmax(dev_x @ solution.weight.T + solution.bias)
    np.testing.assert_allclose(ours, reference.predict_proba(dev_x), atol=1e-5)


def test_the_chosen_c_is_the_best_on_dev_and_ties_go_to_the_stronger_penalty() -> None:
    x, y = blobs(3, n=40)
    dev_x, dev_y = blobs(3, seed=2, n=40)
    solution = solve_linear_head(x, y, 3, (dev_x, dev_y), objective="accuracy")
    scores = [
        (LogisticRegression(C=c, max_iter=2000).fit(x, y).predict(dev_x) == dev_y).mean() for c in C_GRID
    ]
    assert solution.dev_score == pytest.approx(max(scores))
    assert C_GRID[int(np.argmax(scores))] == solution.C  # argmax: the first of equal scores


def penalised_loss_gradient(x: np.ndarray, y: np.ndarray, weight: np.ndarray, bias: np.ndarray, c: float):
    """Gradient of scikit-learn's objective, sum of cross-entropies + ||W||² / (2C), at (weight, bias)."""
    w = torch.tensor(weight, requires_grad=True)
    b = torch.tensor(bias, requires_grad=True)
    logits = torch.from_numpy(x) @ w.T + b
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y), reduction="sum")
    (loss + 0.5 * (w**2).sum() / c).backward()
    return torch.cat([w.grad.flatten(), b.grad]).norm().item()


def test_the_solution_is_the_optimum_of_the_penalised_loss() -> None:
    """The gradient at the solution is a thousandth of the gradient at the start (zero weights)."""
    x, y = blobs(3)
    solution = solve_linear_head(x, y, 3)  # no dev: C = 1
    assert solution.C == 1.0
    start = penalised_loss_gradient(x, y, np.zeros_like(solution.weight), np.zeros_like(solution.bias), 1.0)
    end = penalised_loss_gradient(x, y, solution.weight, solution.bias, 1.0)
    assert end < 1e-3 * start


def test_balanced_weights_favour_a_rare_class() -> None:
    x, y = blobs(2, n=200)
    rare = np.concatenate([np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:10]])
    plain = solve_linear_head(x[rare], y[rare], 2)
    balanced = solve_linear_head(x[rare], y[rare], 2, balanced=True)
    assert (balanced.bias[1] - balanced.bias[0]) > (plain.bias[1] - plain.bias[0])
