"""Resource limits of a lab's sandbox, from lab.yaml `limits:` with the team's defaults."""

from dataclasses import asdict, dataclass, fields
from typing import Any

DEFAULTS = {
    "cpus": 1.0,
    "memory_mb": 256,
    "wall_seconds": 120,
    "pids": 128,
    "output_bytes": 1024 * 1024,
    "scratch_mb": 64,
}


@dataclass(frozen=True)
class SandboxLimits:
    cpus: float = 1.0
    memory_mb: int = 256
    wall_seconds: int = 120  # the whole grading run
    pids: int = 128
    output_bytes: int = 1024 * 1024  # per stream of each command
    scratch_mb: int = 64
    scratch_inodes: int = 8192
    open_files: int = 256
    file_size_mb: int = 64

    @classmethod
    def from_spec(cls, limits: dict[str, Any] | None) -> "SandboxLimits":
        known = {f.name for f in fields(cls)}
        values = {**DEFAULTS, **{k: v for k, v in (limits or {}).items() if k in known}}
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
