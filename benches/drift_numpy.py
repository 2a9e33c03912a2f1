"""numpy/scipy equivalent of the full drift report, timed for benches/drift.rs.

Usage: python benches/drift_numpy.py REF.bin CUR.bin FEATURES REPEATS

REF.bin and CUR.bin hold FEATURES columns of float64 (little-endian), one column after the
other. Per feature it does what twinflow's report does, the way a numpy/scipy user would
write it (it is also what tests/support/drift_reference.py checks against):
- profile: np.quantile edges (10 bins, np.unique), reference bin proportions, mean, std;
- comparison: current bin proportions, PSI with a 1e-4 floor, scipy.stats.ks_2samp
  (method="auto"), scipy.stats.wasserstein_distance / std, Jensen-Shannon (base 2), mean
  change in percent.
Prints one JSON object: the best of REPEATS wall times in milliseconds for the profile,
the comparison and both, with the numpy and scipy versions.
"""
import json
import sys
import time

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon


def profile(ref):
    edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))
    idx = np.searchsorted(edges, ref, side="right")
    props = np.bincount(idx, minlength=len(edges) + 1) / len(ref)
    return edges, props, ref.mean(), ref.std()


def compare(ref, prof, cur):
    edges, rp, mean, std = prof
    idx = np.searchsorted(edges, cur, side="right")
    cp = np.bincount(idx, minlength=len(edges) + 1) / len(cur)
    rf, cf = np.maximum(rp, 1e-4), np.maximum(cp, 1e-4)
    psi = float(np.sum((cf - rf) * np.log(cf / rf)))
    ks = stats.ks_2samp(ref, cur)
    w = stats.wasserstein_distance(ref, cur) / std
    js = float(jensenshannon(rp, cp, base=2))
    change = 100.0 * (cur.mean() - mean) / abs(mean) if mean != 0 else 0.0
    return psi, float(ks.statistic), float(ks.pvalue), float(w), js, change


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    features, repeats = int(sys.argv[3]), int(sys.argv[4])
    ref = np.fromfile(sys.argv[1], dtype="<f8").reshape(features, -1)
    cur = np.fromfile(sys.argv[2], dtype="<f8").reshape(features, -1)
    best = {"profile_ms": float("inf"), "compare_ms": float("inf"), "full_ms": float("inf")}
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        profiles = [profile(ref[i]) for i in range(features)]
        t1 = time.perf_counter()
        result = [compare(ref[i], profiles[i], cur[i]) for i in range(features)]
        t2 = time.perf_counter()
        best["profile_ms"] = min(best["profile_ms"], (t1 - t0) * 1e3)
        best["compare_ms"] = min(best["compare_ms"], (t2 - t1) * 1e3)
        best["full_ms"] = min(best["full_ms"], (t2 - t0) * 1e3)
    best["numpy"] = np.__version__
    best["scipy"] = __import__("scipy").__version__
    best["ks_pvalues"] = [r[2] for r in result]
    json.dump(best, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
