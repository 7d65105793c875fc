"""A site's privacy ledger on disk: every DP round it ever ran, across rounds, runs and restarts.

The ledger is the site's own record and the only thing that decides whether a round may run: a round is
*reserved* (written) before any private data is touched, so a crash mid-round still counts as spent and the
budget can never be exceeded. Writes are atomic and serialised with a file lock.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from cxr_fedsynth.common.atomic import write_json_atomic
from cxr_fedsynth.common.errors import BudgetExceededError, DataError, PolicyRefusal
from cxr_fedsynth.common.privacy.accounting import ACCOUNTANT, epsilon_of
from cxr_fedsynth.common.privacy.site_policy import DP_SGD

LEDGER_FORMAT = 1


@dataclass(frozen=True)
class LedgerEntry:
    """One DP release: which run and round, its mechanism and parameters, and the total epsilon after it."""

    run_id: str
    round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon_after: float
    time: float
    mechanism: str = DP_SGD


@dataclass(frozen=True)
class Budget:
    """The site's total privacy budget."""

    epsilon: float
    delta: float


class SiteLedger:
    """Read, check and append a site's DP spend (JSON file, atomically rewritten)."""

    def __init__(self, path: Path, budget: Budget) -> None:
        self.path = Path(path)
        self.budget = budget

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @classmethod
    def open_existing(cls, path: Path) -> "SiteLedger":
        """A ledger read back from its file, with the budget recorded in it."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no privacy ledger here; pass the --ledger the site's client was started with")
        try:
            budget = Budget(**json.loads(path.read_text())["budget"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: privacy ledger is unreadable ({exc}); restore it from backup") from None
        return cls(path, budget)

    def entries(self) -> list[LedgerEntry]:
        """Every recorded round, oldest first."""
        if not self.path.is_file():
            return []
        try:
            data = json.loads(self.path.read_text())
            return [LedgerEntry(**e) for e in data["entries"]]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(
                f"{self.path}: privacy ledger is unreadable ({exc}); restore it from backup. Never delete it: "
                "the site's past spend would be forgotten"
            ) from None

    def released(self, run_id: str, mechanism: str) -> bool:
        """Whether the ledger records a ``mechanism`` release for ``run_id``."""
        return any(e.run_id == run_id and e.mechanism == mechanism for e in self.entries())

    def history(self) -> list[tuple[float, float, int]]:
        return [(e.noise_multiplier, e.sample_rate, e.steps) for e in self.entries()]

    def spent(self) -> float:
        """Total epsilon spent so far at the budget's delta (RDP composition over every entry)."""
        return epsilon_of(self.history(), delta=self.budget.delta)

    def epsilon_if(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        """Total epsilon the site would have spent after one more round with these parameters."""
        return epsilon_of(self.history() + [(noise_multiplier, sample_rate, steps)], delta=self.budget.delta)

    def reserve(
        self,
        *,
        run_id: str,
        round_number: int,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        mechanism: str = DP_SGD,
        once_per_run: bool = False,
    ) -> float:
        """Record a release before it runs; raises BudgetExceededError (recording nothing) if it would not fit,
        and PolicyRefusal if ``once_per_run`` and the run already holds a ``mechanism`` entry (checked under the
        same lock as the write, so two concurrent requests cannot both pass)."""
        with self._locked():
            if once_per_run and self.released(run_id, mechanism):
                raise PolicyRefusal(f"run {run_id} already received this site's {mechanism} release (one per run)")
            after = self.epsilon_if(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
            if after > self.budget.epsilon:
                raise BudgetExceededError(
                    f"{self.path}: round {round_number} of run {run_id} would bring the site's epsilon to {after:.3f}, "
                    f"over its budget {self.budget.epsilon} (delta {self.budget.delta}, {ACCOUNTANT} accountant; spent "
                    f"{self.spent():.3f}); the site refuses it. Raise --budget-epsilon only if the site's policy allows"
                )
            entry = LedgerEntry(
                run_id, round_number, noise_multiplier, sample_rate, steps, after, time.time(), mechanism
            )
            entries = self.entries() + [entry]
            write_json_atomic(
                self.path,
                {
                    "format": LEDGER_FORMAT,
                    "accountant": ACCOUNTANT,
                    "budget": asdict(self.budget),
                    "entries": [asdict(e) for e in entries],
                },
                private=True,
                durable=True,
            )
            return after

    def summary(self) -> dict:
        """Spent and remaining epsilon, in total and per run (DP-SGD rounds and steps, other releases)."""
        runs: dict[str, list[LedgerEntry]] = {}
        for e in self.entries():
            runs.setdefault(e.run_id, []).append(e)
        spent = self.spent()
        return {
            "ledger": str(self.path),
            "accountant": ACCOUNTANT,
            "budget": asdict(self.budget),
            "spent_epsilon": spent,
            "remaining_epsilon": max(0.0, self.budget.epsilon - spent),
            "runs": {run: _run_summary(entries, self.budget.delta) for run, entries in runs.items()},
        }


def _run_summary(entries: list[LedgerEntry], delta: float) -> dict:
    rounds = [e for e in entries if e.mechanism == DP_SGD]
    return {
        "rounds": len(rounds),
        "steps": sum(e.steps for e in rounds),
        "other_releases": sorted(e.mechanism for e in entries if e.mechanism != DP_SGD),
        "epsilon": epsilon_of([(e.noise_multiplier, e.sample_rate, e.steps) for e in entries], delta=delta),
    }
