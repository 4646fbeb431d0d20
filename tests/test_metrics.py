"""Metrics on hand-made masks, with values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retouch.metrics import best_f1, confusion, f1_score, localisation_scores, mcc, pixel_auc, roc_auc

TRUTH = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], bool)  # 4 positives, 4 negatives
PRED = np.array([[1, 0, 1, 0], [1, 1, 0, 0]], bool)  # tp 3, fp 1, fn 1, tn 3


def test_confusion_f1_mcc_by_hand() -> None:
    assert confusion(PRED, TRUTH) == (3, 1, 1, 3)
    assert f1_score(PRED, TRUTH) == pytest.approx(6 / 8)
    assert mcc(PRED, TRUTH) == pytest.approx((9 - 1) / math.sqrt(4 * 4 * 4 * 4))
    assert f1_score(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert f1_score(np.ones((2, 2)), np.zeros((2, 2))) == 0.0
    assert mcc(np.ones((2, 2)), TRUTH[:, :2]) == 0.0


def test_valid_mask_restricts_the_count() -> None:
    valid = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    assert confusion(PRED, TRUTH, valid=valid) == (3, 0, 1, 2)


def test_auc_by_hand_with_ties() -> None:
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == pytest.approx(0.5)
    assert roc_auc(np.array([1.0, 2.0]), np.array([0, 1])) == 1.0
    assert math.isnan(roc_auc(np.array([1.0, 2.0]), np.array([1, 1])))
    heat = np.where(TRUTH, 0.9, 0.1)
    assert pixel_auc(heat, TRUTH) == 1.0 and pixel_auc(1 - heat, TRUTH) == 0.0


def test_best_f1_finds_the_oracle_threshold() -> None:
    heat = np.array([[0.9, 0.8, 0.7, 0.1], [0.95, 0.85, 0.2, 0.0]])
    assert best_f1(heat, TRUTH) == 1.0  # threshold between 0.7 and 0.8 separates perfectly
    flat = np.full((2, 4), 0.5)
    assert best_f1(flat, TRUTH) == pytest.approx(2 * 4 / (2 * 4 + 4))  # all-positive is the only choice


def _auc_by_pairs(scores: np.ndarray, labels: np.ndarray) -> float:
    """Reference AUC: every (positive, negative) pair, a win counting 1 and a tie one half."""
    positives, negatives = scores[labels], scores[~labels]
    wins = sum(float(p > n) + 0.5 * float(p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def _best_f1_by_thresholds(scores: np.ndarray, labels: np.ndarray) -> float:
    """Reference oracle F1: predict ``score >= t`` for every distinct score t."""
    best = 0.0
    for t in np.unique(scores):
        predicted = scores >= t
        tp = int(np.sum(predicted & labels))
        best = max(best, 2 * tp / (2 * tp + int(np.sum(predicted & ~labels)) + int(np.sum(~predicted & labels))))
    return best


def test_mcc_equals_the_pearson_correlation_of_the_two_masks() -> None:
    # the hand-made masks above have tp = tn and fp = fn, so a swapped marginal in the denominator went unseen;
    # tp 2, fp 1, fn 3, tn 6 has four different marginals
    truth = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], bool)
    prediction = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], bool)
    assert confusion(prediction, truth) == (2, 1, 3, 6)
    assert mcc(prediction, truth) == pytest.approx((2 * 6 - 1 * 3) / math.sqrt(3 * 5 * 7 * 9))
    rng = np.random.default_rng(7)
    for _ in range(20):
        truth = rng.random(200) < rng.uniform(0.05, 0.6)
        prediction = rng.random(200) < rng.uniform(0.05, 0.6)
        assert mcc(prediction, truth) == pytest.approx(np.corrcoef(prediction, truth)[0, 1], abs=1e-12)


def test_best_f1_with_nothing_to_find() -> None:
    empty = np.zeros((2, 4), bool)
    assert best_f1(np.zeros((2, 4)), empty) == 1.0  # nothing claimed at any threshold
    # a pixel at full heat is claimed at every threshold in [0, 1]: a false alarm whatever the oracle picks
    assert best_f1(np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]]), empty) == 0.0
    # below full heat, the top threshold claims nothing, which is right when there is nothing to find (it was 0)
    assert best_f1(np.array([[0.9, 0.3, 0, 0], [0, 0, 0, 0]]), empty) == 1.0


def test_pixel_auc_subsampling_keeps_scores_and_labels_paired() -> None:
    # above max_samples pixels are drawn at random: a heatmap that separates the classes perfectly must still
    # score 1, and an inverted one 0 (a misaligned draw scores about 0.5)
    rng = np.random.default_rng(3)
    truth = rng.random((40, 50)) < 0.3
    heat = np.where(truth, rng.uniform(0.6, 1.0, truth.shape), rng.uniform(0.0, 0.4, truth.shape))
    assert pixel_auc(heat, truth, max_samples=300) == 1.0
    assert pixel_auc(1 - heat, truth, max_samples=300) == 0.0


def test_localisation_scores_against_brute_force_references_inside_the_valid_area() -> None:
    # the benchmark tables come from this one call: each entry must be its metric of the right input (heatmap or
    # decision), restricted to ``valid``; heat levels are multiples of 1/255 so that best_f1's 256 bins are exact
    rng = np.random.default_rng(11)
    truth = np.zeros((30, 40), bool)
    truth[5:20, 8:25] = True
    heat = (rng.integers(0, 256, truth.shape) / 255.0) * 0.6 + np.where(truth, 0.4 * rng.random(truth.shape), 0)
    heat = np.round(heat * 255) / 255
    decision = heat > 0.55
    valid = np.ones(truth.shape, bool)
    valid[:, 30:] = False
    heat[:, 30:] = 1.0  # outside the valid area: full heat on negatives, would lower the AUC if counted
    decision[:, 30:] = True
    scores = localisation_scores(heat, decision, truth, valid=valid)
    inside_heat, inside_truth, inside_decision = heat[valid], truth[valid], decision[valid]
    tp = int(np.sum(inside_decision & inside_truth))
    fp = int(np.sum(inside_decision & ~inside_truth))
    fn = int(np.sum(~inside_decision & inside_truth))
    assert scores["f1_fixed"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert scores["mcc"] == pytest.approx(np.corrcoef(inside_decision, inside_truth)[0, 1])
    assert scores["pixel_auc"] == pytest.approx(_auc_by_pairs(inside_heat, inside_truth))
    assert scores["f1_best"] == pytest.approx(_best_f1_by_thresholds(inside_heat, inside_truth))
    assert scores["f1_best"] > scores["f1_fixed"]  # the heatmap's oracle beats the binary decision here
    assert scores["flagged_fraction"] == pytest.approx(inside_decision.mean())
