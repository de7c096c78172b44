"""TrafficSplit weights -> HTTPRoute backendRef weights (ints in 0..1,000,000).

SMI weights are relative: a backend's share is weight/sum
(`servicemeshinterface/smi-spec: apis/traffic-split/*`). Gateway API weights are too, so the
conversion only has to keep the ratios exact and fit the HTTPRoute range:

* v1alpha1 quantities: whole values stay as written (``"10"``/``"90"`` -> 10/90, so the
  table shows the weights Flagger wrote); any fraction switches the whole split to
  milli-units (``"500m"``/``"1"`` -> 500/1000).
* Any version: weights above 1,000,000 are divided by their greatest common divisor, and
  only if that is not enough scaled down proportionally (the one lossy case, reported).

Pure integer arithmetic; no floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd

from turnout.engine.model.smi import AnyTrafficSplit, TrafficSplitV1alpha1, milli_units

MAX_WEIGHT = 1_000_000
"""Gateway API's upper bound of `backendRefs[].weight`."""


def split_weights(split: AnyTrafficSplit) -> tuple[list[int], bool]:
    """The backends' weights as route weights, in backend order, and whether they had to be
    rounded (scaled into range with some loss of precision)."""
    if isinstance(split, TrafficSplitV1alpha1):
        milli = [milli_units(b.weight) for b in split.spec.backends]
        whole = all(m % 1000 == 0 for m in milli)
        raw = [m // 1000 for m in milli] if whole else milli
    else:
        raw = [b.weight for b in split.spec.backends]
    return fit_weights(raw)


def fit_weights(weights: Sequence[int]) -> tuple[list[int], bool]:
    """Bring relative weights into 0..MAX_WEIGHT keeping their ratios; exact when possible.

    >>> fit_weights([2_000_000, 1_000_000])
    ([2, 1], False)
    """
    out = list(weights)
    if not out or max(out) <= MAX_WEIGHT:
        return out, False
    divisor = 0
    for w in out:
        divisor = gcd(divisor, w)
    out = [w // divisor for w in out]
    top = max(out)
    if top <= MAX_WEIGHT:
        return out, False
    # Round half up, but never turn a non-zero weight into "no traffic".
    scaled = [0 if w == 0 else max(1, (w * MAX_WEIGHT * 2 + top) // (2 * top)) for w in out]
    return scaled, True
