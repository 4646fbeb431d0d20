"""Metrics on hand-made masks, with values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retouch.metrics import best_f1, confusion, f1_score, mcc, pixel_auc, roc_auc

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
