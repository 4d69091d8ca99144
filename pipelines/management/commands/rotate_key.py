from __future__ import annotations

from typing import Any

from pipelines import services
from pipelines.management.commands._output import ConfigCommand


class Command(ConfigCommand):
    help = "Add a new key to the key's pipeline; the old key stays active until revoked."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument("key")

    def run(self, **options: Any) -> dict[str, Any]:
        new = services.key_rotate(key=options["key"])
        return {"pipeline_id": new.pipeline_id, "pipeline_key": new.key, "previous_key": options["key"]}
