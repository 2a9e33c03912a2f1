"""Train the example models on simulated unit-cooler data and export them as
ONNX plus the metadata twinflow needs beside each model.

    ./target/release/twinflow simulate --csv data/train.csv --frames 800 --units 40 \
        --scenario-file training/sim.yaml
    .venv/bin/python training/train.py --data data/train.csv --out models

(`training/make_models.sh` runs both.) Writes, per model, `NAME.onnx` and
`NAME.json` into --out, plus `accuracy.json` and `heldout.csv` (the held-out
rows, which the tests feed to twinflow and to onnxruntime).

Models:
  ridge   StandardScaler + Ridge, three outputs         -> kind: onnx (Scaler + LinearRegressor)
  mlp     StandardScaler + MLPRegressor, three outputs  -> kind: onnx (Scaler, MatMul.., Reshape[-1,1])
  gbm     LightGBM, one booster per output, merged into one TreeEnsembleRegressor (3 targets)
                                                        -> kind: tree_ensemble
  forest  scikit-learn RandomForestRegressor, three outputs (AVERAGE)
                                                        -> kind: tree_ensemble

Held-out rows are eight whole units (uc-05, uc-10, ... uc-40), never seen in
training:
rows of one unit are strongly autocorrelated, so a random row split would
report the accuracy of interpolating between neighbours in time.

The physics model's accuracy on the same rows is computed with the Python
reference coil model (the Rust model matches it to 1e-13), found in
$TWINFLOW_SHARED/reference or ../shared/reference; without it that row is
left out, with a warning.
"""

import argparse
import csv
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

INPUTS = ["UCWIT", "UCAIT", "UCWF", "UCAIH", "AMBT", "UCTSP"]
OUTPUTS = ["UCAOT", "UCWOT", "UCAF"]
UNITS = {
    "UCWIT": "degC", "UCAIT": "degC", "AMBT": "degC", "UCTSP": "degC",
    "UCAOT": "degC", "UCWOT": "degC", "UCWF": "L/min", "UCAIH": "%RH",
    "UCAF": "m3/h", "Q_thermal": "kW",
}
HELDOUT_UNITS = {f"uc-{i:02d}" for i in range(5, 41, 5)}
CP_W = 4.186


def q_thermal(ucwit, ucwot, ucwf):
    return ucwf / 60.0 * CP_W * (ucwot - ucwit)


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if all(r[k] not in ("", "NaN") for k in INPUTS + OUTPUTS)]
    units = np.array([r["unit"] for r in keep])
    x = np.array([[float(r[k]) for k in INPUTS] for r in keep])
    y = np.array([[float(r[k]) for k in OUTPUTS] for r in keep])
    q = np.array([float(r["Q_thermal"]) for r in keep])
    return keep, units, x, y, q


def scores(x, y, q, pred):
    """R² and MAE per output; Q_thermal from the predicted UCWOT."""
    from sklearn.metrics import mean_absolute_error, r2_score

    out = {}
    for i, name in enumerate(OUTPUTS):
        out[name] = {"r2": r2_score(y[:, i], pred[:, i]),
                     "mae": mean_absolute_error(y[:, i], pred[:, i])}
    q_pred = q_thermal(x[:, 0], pred[:, 1], x[:, 2])
    out["Q_thermal"] = {"r2": r2_score(q, q_pred), "mae": mean_absolute_error(q, q_pred)}
    return out


def metadata(name, version, x_train, description, training, metrics, outputs=OUTPUTS):
    return {
        "name": name,
        "version": version,
        "description": description,
        "inputs": [
            {"name": f, "unit": UNITS[f], "min": float(x_train[:, i].min()),
             "max": float(x_train[:, i].max())}
            for i, f in enumerate(INPUTS)
        ],
        "outputs": [{"name": o, "unit": UNITS[o]} for o in outputs],
        "training": training,
        "metrics": metrics,
    }


def unscale_before_reshape(model, mean, std):
    """The MLP learns standardised targets; put `y·std + mean` into the graph
    just before skl2onnx's final Reshape, which stays as skl2onnx made it
    (twinflow reads its [-1, 1] output as rows of three)."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    reshape = [n for n in g.node if n.op_type == "Reshape"]
    assert len(reshape) == 1, [n.op_type for n in g.node]
    r = reshape[0]
    src = r.input[0]
    g.initializer.extend([
        numpy_helper.from_array(std.astype(np.float32), "twinflow_target_std"),
        numpy_helper.from_array(mean.astype(np.float32), "twinflow_target_mean"),
    ])
    mul = helper.make_node("Mul", [src, "twinflow_target_std"], ["twinflow_y_mul"], name="target_std")
    add = helper.make_node("Add", ["twinflow_y_mul", "twinflow_target_mean"], ["twinflow_y"], name="target_mean")
    r.input[0] = "twinflow_y"
    idx = list(g.node).index(r)
    g.node.insert(idx, add)
    g.node.insert(idx, mul)
    onnx.checker.check_model(model)
    return model


def merge_single_target_ensembles(models):
    """One TreeEnsembleRegressor with a target per model, from single-output
    LightGBM exports (onnxmltools writes one graph per booster). Tree ids are
    renumbered so they stay unique and in order."""
    import onnx
    from onnx import helper

    merged = {k: [] for k in [
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values",
        "nodes_modes", "nodes_truenodeids", "nodes_falsenodeids",
        "nodes_missing_value_tracks_true", "nodes_hitrates",
        "target_treeids", "target_nodeids", "target_ids", "target_weights"]}
    base_values = []
    tree_offset = 0
    for target, m in enumerate(models):
        nodes = [n for n in m.graph.node if n.op_type == "TreeEnsembleRegressor"]
        assert len(nodes) == 1
        a = {x.name: helper.get_attribute_value(x) for x in nodes[0].attribute}
        assert a.get("post_transform", b"NONE") == b"NONE"
        assert a.get("aggregate_function", b"SUM") == b"SUM"
        assert a.get("n_targets", 1) == 1
        n_trees = max(a["nodes_treeids"]) + 1
        for k in merged:
            if k not in a:
                continue
            v = list(a[k])
            if k in ("nodes_treeids", "target_treeids"):
                v = [t + tree_offset for t in v]
            if k == "target_ids":
                v = [target for _ in v]
            merged[k].extend(v)
        base_values.append(float(a.get("base_values", [0.0])[0]))
        tree_offset += n_trees
    merged = {k: v for k, v in merged.items() if v}
    node = helper.make_node(
        "TreeEnsembleRegressor", ["input"], ["variable"], domain="ai.onnx.ml",
        name="TreeEnsembleRegressor", n_targets=len(models), post_transform="NONE",
        aggregate_function="SUM", base_values=base_values, **merged)
    graph = helper.make_graph(
        [node], "gbm",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, len(INPUTS)])],
        [helper.make_tensor_value_info("variable", onnx.TensorProto.FLOAT, [None, len(models)])])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="twinflow training/train.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def physics_reference():
    env = os.environ.get("TWINFLOW_SHARED")
    here = Path(__file__).resolve().parent
    for d in ([Path(env)] if env else []) + [here.parent.parent / "shared", here.parent / "shared"]:
        p = d / "reference" / "coil_model.py"
        if p.is_file():
            spec = importlib.util.spec_from_file_location("coil_model", p)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    return None


def physics_predict(ref, x):
    out = []
    for ucwit, ucait, ucwf, ucaih, _ambt, uctsp in x:
        ucaf, _ = ref.fan_airflow(ucait, uctsp)
        r = ref.coil(ucwit, ucait, ucwf, ucaih, ucaf)
        out.append([r["UCAOT"], r["UCWOT"], r["UCAF"]])
    return np.array(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="CSV from `twinflow simulate --csv`")
    ap.add_argument("--out", default="models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--version", default="1", help="version written into every model's metadata")
    args = ap.parse_args()

    import lightgbm as lgb
    import onnx
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType as LgbFloat
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows, units, x, y, q = load(args.data)
    test = np.isin(units, list(HELDOUT_UNITS))
    xtr, ytr = x[~test], y[~test]
    xte, yte, qte = x[test], y[test], q[test]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    training = {
        "data": "twinflow simulate --frames 800 --units 40 --scenario-file training/sim.yaml",
        "rows": int((~test).sum()),
        "heldout_rows": int(test.sum()),
        "heldout": "units " + ", ".join(sorted(HELDOUT_UNITS)),
        "script": "training/train.py",
    }
    opsets = {"": 17, "ai.onnx.ml": 3}
    initial = [("input", FloatTensorType([None, len(INPUTS)]))]
    results = {}

    def save(name, model_proto, predict, description):
        metrics = scores(xte, yte, qte, predict(xte))
        results[name] = metrics
        meta = metadata(name, args.version, xtr, description, training, {"heldout": metrics})
        (out / f"{name}.onnx").write_bytes(model_proto.SerializeToString())
        (out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
        size = (out / f"{name}.onnx").stat().st_size
        print(f"{name}: {size / 1024:.0f} KiB", file=sys.stderr)
        assert size < 1 << 20, f"{name} is over 1 MB"

    ridge = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(xtr, ytr)
    save("ridge", to_onnx(ridge, initial_types=initial, target_opset=opsets), ridge.predict,
         "StandardScaler + Ridge (scikit-learn), three outputs")

    ymean, ystd = ytr.mean(axis=0), ytr.std(axis=0)
    mlp = make_pipeline(StandardScaler(), MLPRegressor(
        hidden_layer_sizes=(32, 32), max_iter=400, early_stopping=True,
        random_state=args.seed, tol=1e-5, n_iter_no_change=20))
    mlp.fit(xtr, (ytr - ymean) / ystd)
    mlp_onnx = unscale_before_reshape(
        to_onnx(mlp, initial_types=initial, target_opset=opsets), ymean, ystd)
    save("mlp", mlp_onnx, lambda a: mlp.predict(a) * ystd + ymean,
         "StandardScaler + MLPRegressor 32x32 (scikit-learn), standardised targets, three outputs")

    boosters, exports = [], []
    for i in range(len(OUTPUTS)):
        b = lgb.LGBMRegressor(n_estimators=150, num_leaves=15, learning_rate=0.08,
                              random_state=args.seed, verbose=-1).fit(xtr, ytr[:, i])
        boosters.append(b)
        exports.append(convert_lightgbm(b, initial_types=[("input", LgbFloat([None, len(INPUTS)]))],
                                        target_opset=15))
    save("gbm", merge_single_target_ensembles(exports),
         lambda a: np.column_stack([b.predict(a) for b in boosters]),
         "LightGBM, one booster per output (150 trees, 15 leaves), merged into one TreeEnsembleRegressor")

    forest = RandomForestRegressor(n_estimators=20, max_depth=8, min_samples_leaf=5,
                                   random_state=args.seed, n_jobs=1).fit(xtr, ytr)
    save("forest", to_onnx(forest, initial_types=initial, target_opset=opsets), forest.predict,
         "RandomForestRegressor (scikit-learn), 20 trees, depth 8, three outputs")

    ref = physics_reference()
    if ref is None:
        print("warning: reference/coil_model.py not found: no physics row", file=sys.stderr)
    else:
        results["physics"] = scores(xte, yte, qte, physics_predict(ref, xte))

    (out / "accuracy.json").write_text(json.dumps(
        {"heldout": training["heldout"], "rows": training["heldout_rows"], "models": results},
        indent=2) + "\n")
    with open(out / "heldout.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(INPUTS + OUTPUTS + ["Q_thermal"])
        for xi, yi, qi in zip(xte[::10], yte[::10], qte[::10]):
            w.writerow([repr(float(v)) for v in list(xi) + list(yi) + [qi]])

    print(f"{'model':8} " + " ".join(f"{o + ' R2':>12} {o + ' MAE':>12}" for o in OUTPUTS + ["Q_thermal"]))
    for name, m in results.items():
        print(f"{name:8} " + " ".join(f"{m[o]['r2']:12.4f} {m[o]['mae']:12.4f}" for o in OUTPUTS + ["Q_thermal"]))


if __name__ == "__main__":
    main()
