from __future__ import annotations

from typing import Any

from pipelines import services
from pipelines.management.commands._output import ConfigCommand


class Command(ConfigCommand):
    help = "Revoke a pipeline key; every gateway refuses it within seconds."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument("key")

    def run(self, **options: Any) -> dict[str, Any]:
        key = services.key_revoke(key=options["key"])
        return {
            "pipeline_id": key.pipeline_id,
            "revoked_key": key.key,
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        }
