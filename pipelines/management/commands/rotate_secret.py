from __future__ import annotations

from typing import Any

from pipelines import services
from pipelines.management.commands._output import ConfigCommand


class Command(ConfigCommand):
    help = "Create a new signing secret (shown only now); the newest two stay active."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument("--pipeline-key", required=True)

    def run(self, **options: Any) -> dict[str, Any]:
        pipeline = services.pipeline_for_key(key=options["pipeline_key"])
        _, secret = services.secret_rotate(pipeline=pipeline)
        return {"pipeline_id": pipeline.id, "signing_secret": secret}
