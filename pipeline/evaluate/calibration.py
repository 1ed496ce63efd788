"""How well a box score works as the probability that an annotator keeps the box.

Reliability: scores in ``bins`` equal-width bins over [0, 1]; per bin the mean score and the share of
boxes kept. Expected calibration error (ECE) = sum over bins of (boxes in bin / boxes) x |share kept -
mean score|; the Brier score is the mean of (score - kept)^2. Scores outside [0, 1] are clipped."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def _bin_index(scores: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((scores * bins).astype(int), bins - 1)  # 1.0 falls in the last bin


def reliability(scores: Sequence[float], kept: Sequence[bool], bins: int = 10) -> dict:
    s = np.clip(np.asarray(scores, np.float64), 0.0, 1.0)
    y = np.asarray(kept, bool).astype(np.float64)
    out = {"boxes": int(s.size), "ece": None, "brier": None, "bins": []}
    if not s.size:
        return out
    idx = _bin_index(s, bins)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        row = {"lo": b / bins, "hi": (b + 1) / bins, "boxes": n, "mean_score": None, "kept_share": None}
        if n:
            row["mean_score"], row["kept_share"] = float(s[m].mean()), float(y[m].mean())
            ece += n / s.size * abs(row["kept_share"] - row["mean_score"])
        out["bins"].append(row)
    out["ece"] = float(ece)
    out["brier"] = float(np.mean((s - y) ** 2))
    return out


def histogram(scores: Sequence[Optional[float]], bins: int = 20) -> list[int]:
    """Box counts per equal-width score bin over [0, 1] (the last bin includes 1.0)."""
    s = np.clip(np.asarray([v for v in scores if v is not None], np.float64), 0.0, 1.0)
    return np.bincount(_bin_index(s, bins), minlength=bins).astype(int).tolist()
