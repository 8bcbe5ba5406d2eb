"""Reference draws of torch's CPU generator, for Easel's TorchGenerator test.

    /usr/bin/python3 tools/reference/torch_randn_fixture.py --out test/fixtures/random/torch-randn.json
"""

import argparse
import json
import pathlib

import torch

SEEDS = [0, 1, 42, 123456789, 2**32 + 7]
# Below 16 values torch draws one by one (double Box-Muller, the second value kept for the next
# scalar draw); from 16 on in blocks of 16. Odd small sizes between large ones test the kept value.
SIZES = [4, 3, 16, 5, 20, 1, 256, 7, 1024, 15, 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=pathlib.Path)
    args = parser.parse_args()
    cases = []
    for seed in SEEDS:
        generator = torch.Generator().manual_seed(seed)
        # Consecutive draws from one generator: the latents, then per-step noise.
        draws = [torch.randn(size, generator=generator).tolist() for size in SIZES]
        cases.append({"seed": seed, "sizes": SIZES, "draws": draws})
    fixture = {"source": f"torch {torch.__version__} CPU generator", "cases": cases}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
