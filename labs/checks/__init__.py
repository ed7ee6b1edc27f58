"""Check kinds, registered by name. Each kind lives in a module of this package.

The framework (base classes, registry, GradingContext) is in `labs.checks.base`; kinds register themselves
with `@register`. `validate_check_spec` is what `validate_course` calls for every check in a lab.yaml.
"""

from labs.checks.base import CHECK_KINDS, Check, CheckOutcome, register, validate_check_spec

__all__ = ["CHECK_KINDS", "Check", "CheckOutcome", "register", "validate_check_spec"]
