"""python train.py --seed N --out PATH: fit y = a*x + b to seeded synthetic data; write the model and a manifest."""

import argparse
import hashlib
import json
import platform
import random
from importlib import metadata
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--out", type=Path, required=True)
args = parser.parse_args()

rng = random.Random(args.seed)
xs = [rng.uniform(0, 10) for _ in range(200)]
ys = [3 * x + 2 + rng.gauss(0, 1.5) for x in xs]
mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
b = my - a * mx

args.out.parent.mkdir(parents=True, exist_ok=True)
args.out.write_text(json.dumps({"seed": args.seed, "slope": round(a, 10), "intercept": round(b, 10)}) + "\n")

here = Path(__file__).resolve()
lock_lines = here.with_name("requirements.lock").read_text().splitlines()
names = [line.split("#")[0].split("==")[0].strip() for line in lock_lines]
packages = {}
for name in filter(None, names):
    try:
        packages[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        packages[name] = None
manifest = {"seed": args.seed, "python": platform.python_version(), "packages": packages,
            "code_sha256": hashlib.sha256(here.read_bytes()).hexdigest()}
(args.out.parent / "run_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
