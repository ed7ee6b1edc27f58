"""Train a two-feature linear price model on synthetic orders generated from --seed.

The model is y = b0 + b1 * weight_kg + b2 * distance_km, fitted by solving the normal equations.
Run: python train.py --seed 42 --out out/model.json
"""

import argparse
import hashlib
import json
import re
import sys
from importlib import metadata
from pathlib import Path
from random import Random

TRUE_COEFS = (4.0, 1.5, 0.8)
NOISE_SD = 1.0
N_ROWS = 300
LOCK = Path(__file__).resolve().with_name("requirements.lock")


def synthesize(seed):
    rng = Random(seed)
    rows = []
    for _ in range(N_ROWS):
        weight, distance = rng.uniform(0.1, 20.0), rng.uniform(1.0, 50.0)
        y = TRUE_COEFS[0] + TRUE_COEFS[1] * weight + TRUE_COEFS[2] * distance + rng.gauss(0.0, NOISE_SD)
        rows.append(((1.0, weight, distance), y))
    return rows


def solve(a, b):
    """Gaussian elimination with partial pivoting for a small dense system a x = b."""
    n = len(b)
    m = [list(row) + [rhs] for row, rhs in zip(a, b)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            m[r] = [x - f * y for x, y in zip(m[r], m[col])]
    x = [0.0] * n
    for r in reversed(range(n)):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def fit(rows):
    k = len(rows[0][0])
    xtx = [[sum(f[i] * f[j] for f, _ in rows) for j in range(k)] for i in range(k)]
    xty = [sum(f[i] * y for f, y in rows) for i in range(k)]
    coefs = solve(xtx, xty)
    rmse = (sum((y - sum(c * v for c, v in zip(coefs, f))) ** 2 for f, y in rows) / len(rows)) ** 0.5
    return coefs, rmse


def installed_versions():
    found = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9._-]+)\s*==", line)
        if match:
            try:
                found[match.group(1)] = metadata.version(match.group(1))
            except metadata.PackageNotFoundError:
                found[match.group(1)] = None
    return found


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    coefs, rmse = fit(synthesize(args.seed))
    model = {
        "model": "linear_regression",
        "features": ["intercept", "weight_kg", "distance_km"],
        "coefficients": [round(c, 10) for c in coefs],
        "train_rmse": round(rmse, 10),
        "rows": N_ROWS,
        "seed": args.seed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        json.dump(model, fh, sort_keys=True, indent=1)
        fh.write("\n")

    v = sys.version_info
    manifest = {
        "seed": args.seed,
        "python": f"{v.major}.{v.minor}.{v.micro}",
        "packages": installed_versions(),
        "code_sha256": hashlib.sha256(Path(__file__).resolve().read_bytes()).hexdigest(),
    }
    with open(args.out.parent / "run_manifest.json", "w", encoding="utf-8", newline="\n") as fh:
        json.dump(manifest, fh, sort_keys=True, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
