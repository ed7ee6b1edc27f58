"""Fit y = w * x + b by full-batch gradient descent on seeded synthetic data; write the model and a manifest.

Run: python train.py --seed 42 --out out/model.json
"""

import argparse
import hashlib
import json
import platform
import random
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

N, EPOCHS, LEARNING_RATE = 250, 400, 0.1


def generate(seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    x = [rng.uniform(0, 10) for _ in range(N)]
    y = [3.0 * xi + 2.0 + rng.gauss(0, 1.5) for xi in x]
    return x, y


def train(x: list[float], y: list[float]) -> dict:
    # Standardise x so one learning rate suits every seed, then undo the scaling at the end.
    mu = sum(x) / len(x)
    sd = (sum((xi - mu) ** 2 for xi in x) / len(x)) ** 0.5
    z = [(xi - mu) / sd for xi in x]
    w = b = 0.0
    for _ in range(EPOCHS):  # fixed order, fixed count: the same floats every run
        residuals = [w * zi + b - yi for zi, yi in zip(z, y)]
        w -= LEARNING_RATE * 2 * sum(r * zi for r, zi in zip(residuals, z)) / len(z)
        b -= LEARNING_RATE * 2 * sum(residuals) / len(z)
    loss = sum((w * zi + b - yi) ** 2 for zi, yi in zip(z, y)) / len(z)
    return {"slope": w / sd, "intercept": b - w * mu / sd, "train_mse": loss}


def packages_from_lock(lock: Path) -> dict:
    result = {}
    for raw in lock.read_text().splitlines():
        req = raw.partition("#")[0].strip()
        if "==" in req:
            name = req.split("==")[0].strip()
            try:
                result[name] = version(name)
            except PackageNotFoundError:
                result[name] = None
    return result


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("--seed", type=int, required=True)
    cli.add_argument("--out", type=Path, required=True)
    args = cli.parse_args()

    fitted = train(*generate(args.seed))
    model = {
        "algorithm": "gradient_descent",
        "epochs": EPOCHS,
        "learning_rate": LEARNING_RATE,
        "seed": args.seed,
        **{k: round(v, 9) for k, v in fitted.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(model, sort_keys=True) + "\n", encoding="utf-8")

    me = Path(__file__).resolve()
    manifest = {
        "seed": args.seed,
        "python": platform.python_version(),
        "packages": packages_from_lock(me.parent / "requirements.lock"),
        "code_sha256": hashlib.sha256(me.read_bytes()).hexdigest(),
    }
    (args.out.parent / "run_manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
