from __future__ import annotations

from typing import Any

from pipelines import services
from pipelines.management.commands._output import ConfigCommand, add_pipeline_argument, pipeline_from


class Command(ConfigCommand):
    help = "Allow a browser origin (scheme, host and port) to send events to the pipeline."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        add_pipeline_argument(parser)
        parser.add_argument("origin", help="e.g. https://shop.example.com")

    def run(self, **options: Any) -> dict[str, Any]:
        pipeline = pipeline_from(options)
        added = services.origin_add(pipeline=pipeline, origin=options["origin"])
        return {
            "pipeline_id": pipeline.id,
            "added": added.origin,
            "origins": sorted(pipeline.origins.values_list("origin", flat=True)),
        }
