"""How runs and the sweep end: exit codes, :class:`RunOutcome` and :class:`SweepResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_DIVERGED = 0, 1, 2, 3
FINAL_EXIT_CODES = (EXIT_OK, EXIT_ERROR, EXIT_DIVERGED)  # not retried


@dataclass
class RunOutcome:
    """How one run of the sweep ended (``status``: completed | diverged | failed | interrupted |
    pending (dry run)); ``attempts`` counts the subprocesses started by this invocation."""

    name: str
    run_dir: Path
    overrides: tuple[str, ...]
    status: str
    iteration: int
    iterations: int
    attempts: int = 0
    retries: int = 0
    skipped: bool = False
    seconds: float = 0.0
    exit_codes: list[int | None] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_dir": str(self.run_dir),
            "overrides": list(self.overrides),
            "status": self.status,
            "iteration": self.iteration,
            "iterations": self.iterations,
            "attempts": self.attempts,
            "retries": self.retries,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 2),
            "exit_codes": self.exit_codes,
            "message": self.message,
        }


@dataclass
class SweepResult:
    """All runs' outcomes; ``exit_code`` of ``metarl sweep``; the summary files written."""

    outcomes: list[RunOutcome]
    backend: str
    interrupted: int | None = None  # signal number
    files: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        statuses = [o.status for o in self.outcomes]
        return {
            "runs": len(self.outcomes),
            "completed": statuses.count("completed"),
            "skipped": sum(o.skipped for o in self.outcomes),
            "retried": sum(o.retries > 0 for o in self.outcomes),
            "diverged": statuses.count("diverged"),
            "failed": statuses.count("failed"),
            "interrupted": statuses.count("interrupted"),
        }

    @property
    def exit_code(self) -> int:
        if self.interrupted is not None:
            return 128 + self.interrupted
        return EXIT_FAILED if self.counts["failed"] else EXIT_OK

    def by_name(self) -> dict[str, RunOutcome]:
        return {o.name: o for o in self.outcomes}
