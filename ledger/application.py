"""The `Ledger` application service: one method per use case, on SQLite or PostgreSQL."""

from __future__ import annotations

from typing import Any, ClassVar

from ledger.commendation import CommendationUseCases
from ledger.recording import RecordingUseCases
from ledger.registry import RegistryUseCases
from ledger.settings import Settings
from ledger.volunteers import Volunteer, VolunteerNumbers


class Ledger(RegistryUseCases, RecordingUseCases, CommendationUseCases):
    """The volunteer-hours ledger. Keep one per process: it owns the store's connection pool."""

    # The name picks the tables on PostgreSQL (ledger_events); subclasses must keep it.
    name = "Ledger"

    snapshotting_intervals: ClassVar[dict[Any, int]] = {Volunteer: 50, VolunteerNumbers: 50}

    def __init__(self, settings: Settings | None = None, env: dict[str, str] | None = None,
                 check_keks: bool = True):
        super().__init__(settings, env, check_keks)
        # The interval is a setting, so each instance gets its own mapping.
        self.snapshotting_intervals = {  # type: ignore[misc]
            Volunteer: self.settings.snapshot_interval,
            VolunteerNumbers: self.settings.snapshot_interval,
        }
