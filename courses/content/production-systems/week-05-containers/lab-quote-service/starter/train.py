"""Training starter. Make the output depend on the seed, and only on the seed; write run_manifest.json.

Run: python train.py --seed 42 --out out/model.json
"""

import argparse
import json
import random
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    xs = [random.uniform(0, 10) for _ in range(200)]  # TODO: generated from the seed?
    ys = [3.0 * x + 2.0 + random.gauss(0, 1.5) for x in xs]
    slope = sum(y for y in ys) / sum(x for x in xs)  # TODO: a real least-squares fit
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"slope": slope, "trained_at": time.time()}))
    # TODO: run_manifest.json with seed, python, packages and code_sha256


if __name__ == "__main__":
    main()
