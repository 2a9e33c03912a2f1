"""Evaluate the Python reference coil model for tests/physics_parity.rs.

Usage: python3 tests/support/coil_reference.py IN.json

IN.json is a list of {"UCWIT", "UCAIT", "UCWF" (L/min), "UCAIH", "AMBT", "UCTSP"} objects.
Prints a JSON list with, per input, the reference's fan_airflow + coil results at default
parameters. Numbers are written as repr() strings: Python's repr is the shortest string that
round-trips, and Rust's str::parse is correctly rounded, so no JSON float parser can add an
ulp of error to the comparison. The reference is imported from $TWINFLOW_SHARED/reference/coil_model.py, or from
<crate>/../shared when that variable is unset; a missing reference is an error, never a skip.
"""
import json
import os
import sys
from pathlib import Path


def shared_dir() -> Path:
    env = os.environ.get("TWINFLOW_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ref = shared_dir() / "reference"
    if not (ref / "coil_model.py").is_file():
        print(f"coil_reference.py: reference model not found at {ref / 'coil_model.py'} "
              "(set TWINFLOW_SHARED to the folder holding reference/coil_model.py)",
              file=sys.stderr)
        return 3
    sys.path.insert(0, str(ref))
    import coil_model as cm  # noqa: E402  (path set just above)

    with open(sys.argv[1], encoding="utf-8") as f:
        inputs = json.load(f)
    out = []
    for x in inputs:
        ucaf, u = cm.fan_airflow(x["UCAIT"], x["UCTSP"])
        r = cm.coil(x["UCWIT"], x["UCAIT"], x["UCWF"], x["UCAIH"], ucaf)
        rec = {
            "UCAF": r["UCAF"], "fan_fraction": u, "UCAOT": r["UCAOT"], "UCWOT": r["UCWOT"],
            "Q_total": r["Q_total"], "Q_sens": r["Q_sens"], "Q_lat": r["Q_lat"],
            "UA": r["UA"], "eps": r["eps"], "Tdp_in": r["Tdp_in"],
            "Tsurf_out": r["Tsurf_out"], "RH_out": r["RH_out"],
            "cond_kg_h": r.get("cond_kg_h", 0.0),
        }
        rec = {k: (None if v is None else repr(float(v))) for k, v in rec.items()}
        rec["regime"] = r["regime"]
        out.append(rec)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
