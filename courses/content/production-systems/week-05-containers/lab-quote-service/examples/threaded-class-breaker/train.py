"""Fit a price-per-unit line to synthetic data drawn from one seed, and record how the run was made.

Run: python train.py --seed 42 --out out/model.json
"""

import argparse
import hashlib
import json
import platform
import random
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_SAMPLES = 200


def make_data(seed):
    rng = random.Random(seed)  # the only source of randomness, created from the seed
    xs = [rng.uniform(0.0, 10.0) for _ in range(N_SAMPLES)]
    ys = [3.0 * x + 2.0 + rng.gauss(0.0, 1.5) for x in xs]
    return xs, ys


def fit_line(xs, ys):
    """Ordinary least squares for y = slope * x + intercept."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    mse = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys)) / n
    return slope, intercept, mse


def locked_packages(lock_path):
    """name -> version actually installed, for every name==version line of the lock."""
    packages = {}
    for line in lock_path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split("==", 1)[0].strip()
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None  # locked but not installed here: say so rather than guess
    return packages


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    slope, intercept, mse = fit_line(*make_data(args.seed))
    model = {
        "kind": "linear",
        "feature": "x",
        "target": "y",
        "seed": args.seed,
        "n_samples": N_SAMPLES,
        "slope": round(slope, 12),
        "intercept": round(intercept, 12),
        "train_mse": round(mse, 12),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(model, indent=2, sort_keys=True) + "\n")

    manifest = {
        "seed": args.seed,
        "python": platform.python_version(),
        "packages": locked_packages(HERE / "requirements.lock"),
        "code_sha256": hashlib.sha256(Path(__file__).resolve().read_bytes()).hexdigest(),
    }
    (args.out.parent / "run_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
