"""Train a tiny logistic model ("is this quote accepted?") on seeded synthetic data, with SGD.

Run: python train.py --seed 42 --out out/model.json
Writes the model to --out and run_manifest.json beside it.
"""

import argparse
import hashlib
import json
import math
import platform
import random
from importlib import metadata
from pathlib import Path

SAMPLES = 400
EPOCHS = 30
STEP = 0.05
TRUE_BIAS, TRUE_WEIGHT = 4.0, -0.2  # acceptance falls as the quoted price rises


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def dataset(rng):
    rows = []
    for _ in range(SAMPLES):
        price = rng.uniform(0.0, 40.0)
        accepted = 1 if rng.random() < sigmoid(TRUE_BIAS + TRUE_WEIGHT * price) else 0
        rows.append((price / 40.0, accepted))  # feature scaled to [0, 1)
    return rows


def sgd(rows, rng):
    bias = weight = 0.0
    for _ in range(EPOCHS):
        rng.shuffle(rows)  # the same generator, so the order is part of the seed too
        for x, y in rows:
            err = sigmoid(bias + weight * x) - y
            bias -= STEP * err
            weight -= STEP * err * x
    loss = -sum(y * math.log(max(sigmoid(bias + weight * x), 1e-12))
                + (1 - y) * math.log(max(1 - sigmoid(bias + weight * x), 1e-12)) for x, y in rows) / len(rows)
    return bias, weight / 40.0, loss  # weight back to price units


def lock_versions(lock_file):
    versions = {}
    for line in lock_file.read_text().splitlines():
        spec = line.split("#")[0].strip()
        if spec:
            name = spec.split("==")[0].strip()
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
    return versions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    bias, weight, loss = sgd(dataset(rng), rng)
    model = {"type": "logistic_regression", "feature": "price_eur", "bias": round(bias, 8),
             "weight": round(weight, 8), "train_log_loss": round(loss, 8), "epochs": EPOCHS, "seed": args.seed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes((json.dumps(model, sort_keys=True, indent=2) + "\n").encode())

    source = Path(__file__).resolve()
    manifest = {
        "seed": args.seed,
        "python": platform.python_version(),
        "packages": lock_versions(source.parent / "requirements.lock"),
        "code_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
    }
    manifest_path = args.out.parent / "run_manifest.json"
    manifest_path.write_bytes((json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
