"""Localisation and detection metrics against ground-truth masks.

Conventions (stated in every benchmark table that uses them):

- Pixel metrics compare a prediction with the ground-truth mask over every pixel of one image (or of the
  ``valid`` pixels when a validity mask is given, e.g. the overlap of two registered scans).
- ``f1_fixed``: F1 of the method's own binary decision (its mask at its own threshold).
- ``f1_best``: the highest F1 over all thresholds of the heatmap on that image (an oracle threshold: an upper
  bound on what the heatmap allows, not an operating point).
- ``mcc``: Matthews correlation coefficient of the method's own decision.
- ``pixel_auc``: area under the ROC curve of the heatmap against the mask (ties count one half); undefined (NaN)
  when the mask is all one class.
- ``image_auc``: AUC of image-level scores, forged (positive) against authentic (negative).
- An empty ground truth with an empty prediction has F1 = 1 (nothing to find, nothing claimed).
"""

from __future__ import annotations

import math

import numpy as np


def _flat(mask: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    values = np.asarray(mask).ravel()
    return values if valid is None else values[np.asarray(valid, bool).ravel()]


def confusion(prediction: np.ndarray, truth: np.ndarray, *, valid: np.ndarray | None = None
              ) -> tuple[int, int, int, int]:
    """(true positives, false positives, false negatives, true negatives) of two binary masks."""
    pred = _flat(prediction, valid).astype(bool)
    true = _flat(truth, valid).astype(bool)
    tp = int(np.count_nonzero(pred & true))
    fp = int(np.count_nonzero(pred & ~true))
    fn = int(np.count_nonzero(~pred & true))
    tn = int(pred.size - tp - fp - fn)
    return tp, fp, fn, tn


def f1_score(prediction: np.ndarray, truth: np.ndarray, *, valid: np.ndarray | None = None) -> float:
    tp, fp, fn, _ = confusion(prediction, truth, valid=valid)
    if tp + fp + fn == 0:
        return 1.0
    return 2.0 * tp / (2.0 * tp + fp + fn)


def mcc(prediction: np.ndarray, truth: np.ndarray, *, valid: np.ndarray | None = None) -> float:
    """Matthews correlation coefficient; 0 when any marginal is empty (no information)."""
    tp, fp, fn, tn = (float(v) for v in confusion(prediction, truth, valid=valid))
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Rank-based ROC AUC (Mann-Whitney U with mid-ranks for ties); NaN if one class is absent."""
    values = np.asarray(scores, np.float64).ravel()
    positive = np.asarray(labels, bool).ravel()
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(values.size, np.float64)
    # mid-ranks: every member of a run of equal values gets the run's mean rank
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [values.size]])
    mean_rank = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, ends - starts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def pixel_auc(heatmap: np.ndarray, truth: np.ndarray, *, valid: np.ndarray | None = None,
              max_samples: int = 2_000_000, seed: int = 0) -> float:
    """ROC AUC of a heatmap against a mask; large images are subsampled (fixed seed) to ``max_samples``."""
    scores = _flat(heatmap, valid)
    labels = _flat(truth, valid).astype(bool)
    if scores.size > max_samples:
        pick = np.random.default_rng(seed).choice(scores.size, max_samples, replace=False)
        scores, labels = scores[pick], labels[pick]
    return roc_auc(scores, labels)


def best_f1(heatmap: np.ndarray, truth: np.ndarray, *, valid: np.ndarray | None = None, bins: int = 256) -> float:
    """Highest F1 over thresholds of the heatmap (quantised to ``bins`` levels in [0, 1])."""
    scores = np.clip(_flat(heatmap, valid).astype(np.float64), 0.0, 1.0)
    labels = _flat(truth, valid).astype(bool)
    n_true = int(labels.sum())
    levels = np.minimum((scores * (bins - 1)).round().astype(np.int64), bins - 1)
    if n_true == 0:  # the top threshold claims nothing unless a pixel is at full heat: F1 1 (empty against empty)
        return 1.0 if not np.any(levels == bins - 1) else 0.0
    positives = np.bincount(levels[labels], minlength=bins)
    negatives = np.bincount(levels[~labels], minlength=bins)
    # predicting "level >= t" for each t: cumulative counts from the top
    tp = np.cumsum(positives[::-1])[::-1]
    fp = np.cumsum(negatives[::-1])[::-1]
    fn = n_true - tp
    f1 = 2.0 * tp / np.maximum(2.0 * tp + fp + fn, 1)
    return float(f1.max())


def localisation_scores(heatmap: np.ndarray, decision: np.ndarray, truth: np.ndarray, *,
                        valid: np.ndarray | None = None) -> dict[str, float]:
    """All pixel metrics of one image, as in the benchmark tables."""
    return {
        "f1_fixed": f1_score(decision, truth, valid=valid),
        "f1_best": best_f1(heatmap, truth, valid=valid),
        "mcc": mcc(decision, truth, valid=valid),
        "pixel_auc": pixel_auc(heatmap, truth, valid=valid),
        "flagged_fraction": float(_flat(decision, valid).mean()) if _flat(decision, valid).size else 0.0,
    }


# Verdict thresholds of the teaching gallery: a finding covers the truth when at least half of the truth is flagged
# and at least half of what was flagged is truth; below a tenth on both counts the flag is elsewhere.
FOUND_SHARE = 0.5
ELSEWHERE_SHARE = 0.1


def overlap_verdict(flagged: np.ndarray, truth: np.ndarray) -> dict[str, object]:
    """A method's decision against the truth, as a word and the overlap behind it.

    ``verdict`` is ``"found"`` (at least half of the truth flagged, and at least half of the flag on the truth),
    ``"partly"`` (some of each), ``"missed"`` (nothing flagged where there was something), ``"false alarm"``
    (flagged where nothing was changed: on an untouched image, or almost entirely beside the truth), or
    ``"quiet"`` (nothing to find and nothing flagged). ``overlap_px``, ``truth_px`` and ``flagged_px`` are the
    pixel counts it rests on.
    """
    flagged = np.asarray(flagged, bool)
    truth = np.asarray(truth, bool)
    if flagged.shape != truth.shape:
        raise ValueError(f"flagged mask {flagged.shape} and truth mask {truth.shape} differ in shape")
    overlap = int(np.count_nonzero(flagged & truth))
    flagged_px, truth_px = int(np.count_nonzero(flagged)), int(np.count_nonzero(truth))
    if truth_px == 0:
        word = "false alarm" if flagged_px else "quiet"
    elif flagged_px == 0:
        word = "missed"
    elif overlap / truth_px >= FOUND_SHARE and overlap / flagged_px >= FOUND_SHARE:
        word = "found"
    elif overlap / truth_px < ELSEWHERE_SHARE and overlap / flagged_px < ELSEWHERE_SHARE:
        word = "false alarm"
    else:
        word = "partly"
    return {"verdict": word, "overlap_px": overlap, "truth_px": truth_px, "flagged_px": flagged_px}
