"""numpy/scipy side of tests/drift_parity.rs.

Usage: python tests/support/drift_reference.py IN.json

IN.json: {"cases": [{"name", "reference": [...], "current": [...], "method"}],
          "kstwo": [[n, x], ...], "smirnov": [[n, x], ...]}
where method is the `method` argument of scipy.stats.ks_2samp ("auto", "exact", "asymp").

For each case, the drift statistics exactly as the domain notes define them:
- PSI: inner edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10)) (numpy's default
  linear interpolation), outer edges -inf/+inf, a value equal to an edge in the bin above it
  (searchsorted side="right"), each proportion floored at 1e-4 (np.maximum, no
  renormalisation), PSI = sum((c - r) * ln(c / r));
- KS: scipy.stats.ks_2samp(ref, cur, method=method);
- Wasserstein: scipy.stats.wasserstein_distance(ref, cur) / np.std(ref) (ddof=0);
- JS: scipy.spatial.distance.jensenshannon(r, c, base=2) on the raw (unfloored) proportions.
Also scipy.stats.kstwo.sf(x, n) and scipy.special.smirnov(n, x) at the listed points.

Numbers are printed as repr() strings, the shortest text that round-trips, so the
comparison sees exactly the f64 Python computed. Any warning scipy raises (for example an
exact KS computation falling back to the asymptotic one) is reported, never hidden.
"""
import json
import sys
import warnings

import numpy as np
from scipy import special, stats
from scipy.spatial.distance import jensenshannon


def r(x):
    return repr(float(x))


def drift_case(case):
    ref = np.asarray(case["reference"], dtype=np.float64)
    cur = np.asarray(case["current"], dtype=np.float64)
    edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))

    def proportions(x):
        idx = np.searchsorted(edges, x, side="right")
        return np.bincount(idx, minlength=len(edges) + 1) / len(x)

    rp = proportions(ref)
    cp = proportions(cur)
    rf = np.maximum(rp, 1e-4)
    cf = np.maximum(cp, 1e-4)
    psi = np.sum((cf - rf) * np.log(cf / rf))
    ks = stats.ks_2samp(ref, cur, method=case["method"])
    w = stats.wasserstein_distance(ref, cur) / np.std(ref)
    js = jensenshannon(rp, cp, base=2)
    return {
        "name": case["name"],
        "edges": [r(e) for e in edges],
        "reference_proportions": [r(p) for p in rp],
        "current_proportions": [r(p) for p in cp],
        "psi": r(psi),
        "ks_statistic": r(ks.statistic),
        "ks_pvalue": r(ks.pvalue),
        "wasserstein": r(w),
        "js": r(js),
    }


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = {
            "versions": {"numpy": np.__version__, "scipy": __import__("scipy").__version__},
            "cases": [drift_case(c) for c in spec["cases"]],
            "kstwo": [r(stats.kstwo.sf(x, n)) for n, x in spec["kstwo"]],
            "smirnov": [r(special.smirnov(n, x)) for n, x in spec["smirnov"]],
        }
        out["warnings"] = [str(w.message) for w in caught]
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
