"""The runs in progress in this process: what the worker asks before starting a job, and what
it waits for when it shuts down. One instance per process; each `Run` registers itself."""

from __future__ import annotations

import threading


class ActiveRuns:
    """Run id → job name, for the runs this process is executing now."""

    def __init__(self) -> None:
        self._runs: dict[int, str] = {}
        self._changed = threading.Condition()

    def add(self, run_id: int, job: str) -> None:
        with self._changed:
            self._runs[run_id] = job

    def remove(self, run_id: int | None) -> None:
        with self._changed:
            self._runs.pop(run_id, None)  # type: ignore[arg-type]
            self._changed.notify_all()

    def is_running(self, job: str) -> bool:
        with self._changed:
            return job in self._runs.values()

    def wait_idle(self, timeout: float) -> dict[int, str]:
        """Wait up to `timeout` s for every run to end; return those still going."""
        with self._changed:
            self._changed.wait_for(lambda: not self._runs, timeout)
            return dict(self._runs)
