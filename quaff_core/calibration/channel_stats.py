"""Running per-channel statistics of one layer's inputs, and the outlier channels they select.

`ScaleExcess` (strategy `int8_scale`) ranks channels by how much of each token's int8 scale they
hold up; `HitCounter` implements the four rule-hit strategies (`mean_times`, `top_abs`, `zscore`,
`static`). Both keep O(K) state however many batches they see.
"""

from __future__ import annotations

import torch

_EPS = 1e-12


def _valid_abs(x: torch.Tensor) -> torch.Tensor:
    """|x| of the tokens whose activations are all finite, in x's dtype (|x|, its maxima and its
    top-k values are exact there): x [T, K] -> [T', K]. A row's max is NaN or inf exactly when
    the row holds one, so the common all-finite case costs one reduction and no copy."""
    a = x.detach().abs()
    finite = torch.isfinite(a.amax(dim=1))
    return a if bool(finite.all()) else a[finite]


class ScaleExcess:
    """`int8_scale`: the share of the per-token int8 scale each channel holds up (float64 [K]).

    Per token, sort |x| descending (v_1 >= v_2 >= ...; mean square ms). The channel at rank
    j <= top_k is credited (v_j^2 - v_{j+1}^2) / ms: how much the token's squared int8 scale,
    in units of its mean square, falls when that channel leaves the int8 path after the ones
    above it (the int8 noise-to-signal ratio is proportional to v_1^2 / ms). A channel's score
    is its mean credit per token times 1 - 1 / s^2, where s = max(1, sqrt(max|x| / max|W|)) is
    the factor by which Quaff scales it down: a channel Quaff would not scale (s = 1) gains
    nothing. Selected: the top_k highest scores that are >= threshold.
    """

    def __init__(self, in_features: int, threshold: float, top_k: int) -> None:
        self.in_features = in_features
        self.threshold = threshold
        self.top_k = min(top_k, in_features)
        self.credit = torch.zeros(in_features, dtype=torch.float64)
        self.max_abs = torch.zeros(in_features, dtype=torch.float32)
        self.tokens = 0

    def update(self, x: torch.Tensor) -> None:
        """x [T, K] activations of valid tokens."""
        a = _valid_abs(x)
        if a.shape[0] == 0:
            return
        self.tokens += a.shape[0]
        self.max_abs = torch.maximum(self.max_abs, a.amax(dim=0).float().cpu())
        if self.top_k == 0:
            return
        top = a.topk(min(self.top_k + 1, self.in_features), dim=1)
        v2 = top.values.float().square()
        if v2.shape[1] == self.top_k:  # every channel is a candidate: the level below is 0
            v2 = torch.cat([v2, v2.new_zeros(v2.shape[0], 1)], dim=1)
        norm = torch.linalg.vector_norm(a, dim=1, keepdim=True, dtype=torch.float32)
        mean_sq = (norm.square() / self.in_features).clamp_min(_EPS)
        credit = (v2[:, :-1] - v2[:, 1:]) / mean_sq
        index = top.indices[:, : self.top_k].flatten().cpu()
        self.credit.index_add_(0, index, credit.flatten().double().cpu())

    def scores(self, weight_max: torch.Tensor) -> torch.Tensor:
        """Mean credit per token times 1 - 1/s^2; weight_max [K] = max_n |W[n, k]|: f64 [K]."""
        s2 = (self.max_abs.double() / weight_max.double().clamp_min(_EPS)).clamp_min(1.0)
        return self.credit / max(self.tokens, 1) * (1.0 - 1.0 / s2)

    def select(self, weight_max: torch.Tensor) -> list[int]:
        """The top_k channels by score whose score is >= threshold (and > 0), sorted."""
        if self.top_k == 0:
            return []
        score = self.scores(weight_max)
        top = score.topk(self.top_k)
        keep = (top.values >= self.threshold) & (top.values > 0)
        return sorted(top.indices[keep].tolist())


class HitCounter:
    """Rule-hit strategies: per channel, how many tokens hit the rule (int64 [K])."""

    def __init__(self, in_features: int, strategy: str, threshold: float, top_k: int) -> None:
        self.in_features = in_features
        self.strategy = strategy
        self.threshold = threshold
        self.top_k = top_k
        self.counts = torch.zeros(in_features, dtype=torch.int64)
        self.max_abs = torch.zeros(in_features, dtype=torch.float32)

    def update(self, x: torch.Tensor) -> None:
        """x [T, K] activations of valid tokens."""
        a = x.detach().float().abs()
        if self.strategy == "mean_times":
            hits = a > self.threshold * a.mean(dim=1, keepdim=True)
        elif self.strategy == "zscore":
            mean = a.mean(dim=1, keepdim=True)
            std = a.std(dim=1, keepdim=True).clamp_min(_EPS)
            hits = (a - mean) / std > self.threshold
        elif self.strategy == "static":
            hits = a > self.threshold
        else:  # top_abs: the k largest |x| of each token
            k = max(1, self.top_k)
            idx = a.topk(k, dim=1).indices
            hits = torch.zeros_like(a, dtype=torch.bool).scatter_(1, idx, True)
        self.counts += hits.sum(dim=0).cpu()
        self.max_abs = torch.maximum(self.max_abs, a.amax(dim=0).cpu())

    def select(self) -> list[int]:
        """At most top_k channels that hit the rule, most frequent first (ties: larger max|x|)."""
        hit = (self.counts > 0).nonzero().flatten().tolist()
        hit.sort(key=lambda c: (-int(self.counts[c]), -float(self.max_abs[c]), c))
        return sorted(hit[: self.top_k])
