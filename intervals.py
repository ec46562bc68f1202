"""
Confidence intervals of a score: wilson_interval, the 95% interval of an exact-match rate.
Serves evaluate.py (eval.json) and train.py (metrics.json).
"""


def wilson_interval(correct, n, z=1.96):
    """
    The 95% Wilson score interval of a proportion: sound at small n and near 0 or 1.
    Example: wilson_interval(50, 100) == (0.4038..., 0.5961...)
    """
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
