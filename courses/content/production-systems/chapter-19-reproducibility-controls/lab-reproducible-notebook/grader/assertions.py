# ruff: noqa: F821 - x, y, metric and env are the notebook's variables in the kernel this runs in.
# Hidden assertions: run in the learner's kernel after the whole notebook ran clean.
import numpy as _np

assert "metric" in globals(), "the notebook defines no variable named metric"
assert "x" in globals() and "y" in globals(), "the synthetic data must be in variables x and y"
_slope, _intercept = _np.polyfit(x, y, deg=1)
_expected = round(float(_np.mean((y - (_slope * x + _intercept)) ** 2)), 6)
assert abs(metric - _expected) < 1e-6, f"metric is {metric}, but the mean squared error of the fit is {_expected}"
assert (
    abs(_slope - 3.0) < 0.2
), f"the fitted slope {_slope:.3f} is far from the true 3.0: is the data generated as described?"
assert env.get("numpy") == _np.__version__, f"env records numpy {env.get('numpy')}, the kernel has {_np.__version__}"
