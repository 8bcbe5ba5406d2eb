"""Grades the served diffusion models' prompt adherence through Easel's own API.

The 100 held-out captions of tiny-sd and tiny-sdxl (attribute combinations neither saw in
training), each with several seeds, go to POST /predictions/<model> (DDIM, 20 steps, guidance
7.5, 64x64) and the PNGs that come back are graded by the factory's analyser. Every model gets the
same captions, seeds and analyser, and the images are what Easel serves (ONNX Runtime), not
PyTorch's: a larger sample than the cards' one image per caption, for comparing two models whose
card figures differ by an image or two.

    npm start &                     # or any Easel that serves the models
    <python with numpy and pillow> tools/model-factory/served_eval.py [--models tiny-sd,tiny-sdxl --seeds 4 --url http://127.0.0.1:8080]

Needs numpy and pillow only (shapes.py's analyser): Debian's python3-numpy and python3-pil, or a venv.
"""
import argparse
import io
import json
import math
import os
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import shapes  # noqa: E402


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson interval of a proportion."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def predict(url: str, model: str, prompt: str, seed: int) -> np.ndarray:
    body = json.dumps({"prompt": prompt, "seed": seed, "num_inference_steps": 20, "guidance_scale": 7.5,
                       "scheduler": "ddim", "width": 64, "height": 64}).encode()
    req = urllib.request.Request(f"{url}/predictions/{model}", body, {"content-type": "application/json", "accept": "image/png"})
    with urllib.request.urlopen(req, timeout=120) as res:
        return np.asarray(Image.open(io.BytesIO(res.read())).convert("RGB"), dtype=np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--models", default="tiny-sd,tiny-sdxl")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    # The cards' held-out captions (tiny_sd.py's and tiny_sdxl.py's split, seed 0).
    _, heldout = shapes.build_split(0, 100, 0)
    cases = [(attrs, prompt, seed) for seed in range(args.seeds) for attrs, prompt in heldout]
    print(f"{len(heldout)} held-out captions x {args.seeds} seeds, DDIM 20 steps, guidance 7.5, through {args.url}/predictions\n")
    print("| model | foreground | background | shape |\n|---|---|---|---|")
    for model in args.models.split(","):
        with ThreadPoolExecutor(args.concurrency) as pool:
            images = list(pool.map(lambda c: predict(args.url, model, c[1], c[2]), cases))
        graded = shapes.grade(images, [(attrs, prompt) for attrs, prompt, _ in cases])
        cells = []
        for k in ("fg", "bg", "shape"):
            hits = round(graded[k] * len(cases))
            lo, hi = wilson(hits, len(cases))
            cells.append(f"{hits}/{len(cases)} = {graded[k]:.3f} ({lo:.3f}–{hi:.3f})")
        print(f"| {model} | {' | '.join(cells)} |", flush=True)
    print("\n(95 % Wilson intervals in brackets)")


if __name__ == "__main__":
    main()
