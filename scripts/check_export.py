#!/usr/bin/env python3
"""Checks an `attnrec export` module with PyTorch alone.

    python scripts/check_export.py model.pt [--tol 1e-5]

Loads model.pt with torch.jit.load, checks its sidecar (model.json) against the example batches
(model.example.npz: names, shapes, dtypes), runs both batches through the module and compares the
probabilities with attnrec's, written beside them, to --tol. The second batch was not the one
traced, so a module that replays its trace's constants fails here. Exit status 0 when all match.
"""
import argparse
import json
import pathlib
import sys

import numpy as np
import torch

DTYPES = {"int64": np.int64, "bool": np.bool_, "float32": np.float32}


def fail(msg):
    print(f"check_export: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("module", type=pathlib.Path)
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    stem = args.module.with_suffix("")
    sidecar = json.loads(pathlib.Path(f"{stem}.json").read_text())
    example = np.load(f"{stem}.example.npz")
    if sidecar["format"] != "torchscript":
        fail(f"sidecar format is {sidecar['format']!r}, expected 'torchscript'")
    if not pathlib.Path(stem.parent / sidecar["feature_map"]).is_file():
        fail(f"the sidecar's feature map {sidecar['feature_map']} is missing")
    module = torch.jit.load(str(args.module), map_location="cpu")
    module.eval()
    worst = 0.0
    for k in (1, 2):
        inputs = []
        for spec in sidecar["inputs"]:
            a = example[f"batch{k}.{spec['name']}"]
            if spec["dtype"] == "bool":
                a = a.astype(np.bool_)
            if list(a.shape) != spec["shape"]:
                fail(f"batch{k}.{spec['name']}: shape {list(a.shape)}, sidecar says {spec['shape']}")
            if a.dtype != DTYPES[spec["dtype"]]:
                fail(f"batch{k}.{spec['name']}: dtype {a.dtype}, sidecar says {spec['dtype']}")
            inputs.append(torch.from_numpy(np.ascontiguousarray(a)))
        with torch.no_grad():
            got = module(*inputs)
        want = torch.from_numpy(example[f"batch{k}.expected"])
        if list(got.shape) != sidecar["output"]["shape"] or got.dtype != torch.float32:
            fail(f"batch{k}: output {list(got.shape)} {got.dtype}, sidecar says {sidecar['output']['shape']} float32")
        diff = (got - want).abs().max().item()
        worst = max(worst, diff)
        print(f"batch{k}: {got.shape[0]} rows, max |torch - attnrec| = {diff:.3g}")
        if not diff <= args.tol:
            fail(f"batch{k}: probabilities differ from attnrec's by {diff:.3g} > {args.tol:g}")
    if np.array_equal(example["batch1.expected"], example["batch2.expected"]):
        fail("the two example batches have identical expected outputs; the check would not notice replayed constants")
    print(f"check_export: OK ({sidecar['model']}, torch {torch.__version__}, max diff {worst:.3g} <= {args.tol:g})")


if __name__ == "__main__":
    main()
