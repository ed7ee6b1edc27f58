"""Fit a two-feature linear price model with numpy on data generated from --seed.

Run: python train.py --seed 42 --out out/model.json
Same seed -> byte-identical model.json; run_manifest.json is written beside it.
"""

import os

# One BLAS thread: the reduction order, and so every bit of the result, does not depend on the host.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

N = 1_000
TRUE_INTERCEPT = 2.0
TRUE_WEIGHTS = np.array([3.0, -1.2])
NOISE_SD = 1.5
DECIMALS = 9  # well above the noise in the fit, well below float64 round-off


def generate(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.uniform(0.0, 10.0, size=(N, 2))
    target = TRUE_INTERCEPT + features @ TRUE_WEIGHTS + rng.normal(0.0, NOISE_SD, size=N)
    return features, target


def fit(features: np.ndarray, target: np.ndarray) -> dict:
    design = np.column_stack([np.ones(len(features)), features])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    residuals = target - design @ coef
    return {
        "intercept": round(float(coef[0]), DECIMALS),
        "weights": [round(float(w), DECIMALS) for w in coef[1:]],
        "train_mse": round(float(np.mean(residuals**2)), DECIMALS),
    }


def lock_packages(lock: Path) -> dict:
    """Every name==version in the lock, mapped to the version this interpreter really imports."""
    names = [line.split("#")[0].split("==")[0].strip() for line in lock.read_text().splitlines()]
    out = {}
    for name in filter(None, names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    model = {"model": "ols", "features": ["x1", "x2"], "n": N, "seed": args.seed, **fit(*generate(args.seed))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(model, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    code = Path(__file__).resolve()
    manifest = {
        "seed": args.seed,
        "python": platform.python_version(),
        "packages": lock_packages(code.with_name("requirements.lock")),
        "code_sha256": hashlib.sha256(code.read_bytes()).hexdigest(),
    }
    (args.out.parent / "run_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                                       encoding="utf-8")


if __name__ == "__main__":
    main()
