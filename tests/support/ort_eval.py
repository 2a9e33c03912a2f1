"""Run an ONNX model with onnxruntime, for tests/models.rs.

Usage: python ort_eval.py MODEL.onnx ROWS.json

ROWS.json is a list of rows (lists of numbers). The rows are cast to the
model input's element type, as a client of onnxruntime would; the model runs
on one thread (onnxruntime splits large tree ensembles across threads, which
changes the order of its f32 sums). Prints a JSON list with one list of
outputs per row; numbers are repr() strings, which round-trip exactly.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64}[inp.type]
    rows = np.array(json.load(open(sys.argv[2])), dtype=np.float64).astype(dtype)
    outs = sess.run(None, {inp.name: rows})
    n = rows.shape[0]
    cols = [np.asarray(o, dtype=np.float64).reshape(n, -1) for o in outs]
    y = np.concatenate(cols, axis=1)
    json.dump([[repr(float(v)) for v in r] for r in y], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
