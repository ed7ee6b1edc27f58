"""Check kinds, registered by name. Each kind lives in a module of this package.

The framework (base classes, registry, GradingContext) is in `labs.checks.base`; kinds register themselves
with `@register`, and `check_kind(name)` / `check_kinds()` there are the registry's public accessors.
`validate_check_spec` is what `validate_course` calls for every check in a lab.yaml.
"""
