"""ONNX export and the ONNX-vs-PyTorch parity check shared by the factory's model builders.

Debian packages no ONNX Runtime for Python, so parity runs the exported graphs with the
project's own onnxruntime-node (ort_parity.mjs) on inputs and PyTorch outputs saved here.
"""
import argparse
import inspect
import json
import os
import subprocess

import numpy as np
import torch

OPSET = 17
DTYPES = {torch.float32: "float32", torch.int64: "int64", torch.int32: "int32"}


def export(module, inputs: dict, outputs: list[str], axes: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    module.eval()
    # The TorchScript exporter: torch 2.9 and later default to the torch.export one (dynamo=True).
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad():
        torch.onnx.export(module, tuple(inputs.values()), path, input_names=list(inputs), output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, **legacy)


def _save(t: torch.Tensor, path: str) -> dict:
    arr = t.detach().contiguous().numpy()
    arr.tofile(path)
    return {"file": path, "dtype": DTYPES[t.dtype], "shape": list(arr.shape)}


def check_parity(graphs: list[dict], work: str) -> dict:
    """Runs each graph on its example inputs in PyTorch and in ONNX Runtime; returns the max abs
    difference per graph, plus the per-sample batch checks that ort_parity.mjs makes."""
    pdir = os.path.join(work, "parity")
    os.makedirs(pdir, exist_ok=True)
    manifest = []
    for g in graphs:
        with torch.no_grad():
            outs = g["module"](*g["inputs"].values())
        outs = outs if isinstance(outs, tuple) else (outs,)
        entry = {"name": g["name"], "model": os.path.abspath(g["path"]), "inputs": {}, "outputs": {},
                 "split_batch": g.get("split_batch", True)}
        for k, v in g["inputs"].items():
            entry["inputs"][k] = _save(v, os.path.join(pdir, f"{g['name']}.in.{k}.bin"))
        for k, v in zip(g["outputs"], outs):
            entry["outputs"][k] = _save(v, os.path.join(pdir, f"{g['name']}.out.{k}.bin"))
        manifest.append(entry)
    mpath = os.path.join(pdir, "manifest.json")
    with open(mpath, "w") as f:
        json.dump(manifest, f)
    script = os.path.join(os.path.dirname(__file__), "ort_parity.mjs")
    res = subprocess.run(["node", script, mpath], capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def print_table(title: str, report: dict) -> None:
    print(f"\n== {title} ==")
    for k, v in report.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for kk, vv in v.items():
                print(f"  {kk:<34} {vv}")
        else:
            print(f"{k:<36} {v}")


def diffusion_args(name: str, unet_steps: int, skip_help: str, extra=None) -> argparse.Namespace:
    """The command line both diffusion builders take (tiny_sd.py, tiny_sdxl.py); `extra` adds a builder's own."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=f"models/{name}")
    ap.add_argument("--work", default=f"tools/model-factory/.work/{name}")
    ap.add_argument("--images", type=int, default=30000)
    ap.add_argument("--vae-steps", type=int, default=1200)
    ap.add_argument("--unet-steps", type=int, default=unet_steps)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-train", action="store_true", help=skip_help)
    if extra:  # after the common arguments, so that a builder's set_defaults overrides their defaults
        extra(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    return args
