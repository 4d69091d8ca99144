from __future__ import annotations

import json
from typing import Any

from ingestion.signatures import SCHEMES
from pipelines import services
from pipelines.management.commands._output import ConfigCommand


class Command(ConfigCommand):
    help = "Create a webhook source (wh_…) for the key's pipeline."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument("--pipeline-key", required=True)
        parser.add_argument("--scheme", required=True, choices=list(SCHEMES))
        parser.add_argument("--secret", default="")
        parser.add_argument("--mapping", default="{}", help='JSON: {"event": "type", "userId": "data.object.customer"}')
        parser.add_argument("--options", default="{}", help='JSON scheme options, e.g. {"header": "X-Signature"}')
        parser.add_argument("--tolerance", type=int, default=300, help="seconds")
        parser.add_argument("--name", default="")

    def run(self, **options: Any) -> dict[str, Any]:
        try:
            mapping = json.loads(options["mapping"])
            scheme_options = json.loads(options["options"])
        except json.JSONDecodeError as exc:
            raise services.ConfigError(f"--mapping/--options must be JSON: {exc}") from exc
        if not isinstance(scheme_options, dict):
            raise services.ConfigError("--options must be a JSON object")
        pipeline = services.pipeline_for_key(key=options["pipeline_key"])
        source = services.webhook_source_create(
            pipeline=pipeline,
            scheme=options["scheme"],
            secret=options["secret"],
            mapping=mapping,
            tolerance_seconds=options["tolerance"],
            options=scheme_options,
            name=options["name"],
        )
        return {"pipeline_id": pipeline.id, "source_id": source.id}
