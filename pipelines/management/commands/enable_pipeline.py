from __future__ import annotations

from typing import Any

from pipelines import services
from pipelines.management.commands._output import ConfigCommand, add_pipeline_argument, pipeline_from


class Command(ConfigCommand):
    help = "Enable a pipeline: its keys are accepted again."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        add_pipeline_argument(parser)

    def run(self, **options: Any) -> dict[str, Any]:
        pipeline = services.pipeline_set_enabled(pipeline=pipeline_from(options), enabled=True)
        return {"pipeline_id": pipeline.id, "enabled": pipeline.enabled}
