"""Who did something and where it came from: carried by every event the ledger records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.catalogue import Role


@dataclass(frozen=True)
class Actor:
    """The person or script acting: a token or user id, its role, and for recorders its unit."""

    id: str
    role: Role
    unit_id: str | None = None

    def as_event_data(self) -> dict[str, Any]:
        """The actor as stored in an event."""
        data: dict[str, Any] = {"id": self.id, "role": str(self.role)}
        if self.unit_id is not None:
            data["unit_id"] = self.unit_id
        return data


SYSTEM = Actor(id="system", role=Role.admin)


@dataclass(frozen=True)
class Origin:
    """Who acted and through which channel (api, cli, demo, import:<batch>)."""

    actor: Actor
    source: str = "api"

    def meta(self) -> dict[str, Any]:
        """Keyword arguments that every event method takes."""
        return {"actor": self.actor.as_event_data(), "source": self.source}
