"""A sandbox's resource limits.

The lab-set values have no defaults here: a lab's come from its spec (`labs.labspec.LimitsSpec.sandbox_limits`,
which fills in the documented defaults and clamps to the platform maxima). The rest are the sandbox's own.
"""

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SandboxLimits:
    cpus: float
    memory_mb: int
    wall_seconds: int  # the whole grading run
    pids: int
    output_bytes: int  # per stream of each command
    scratch_mb: int
    scratch_inodes: int = 8192
    open_files: int = 256
    file_size_mb: int = 64

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
