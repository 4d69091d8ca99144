from __future__ import annotations

from typing import Any

from pipelines import services
from pipelines.management.commands._output import ConfigCommand, add_pipeline_argument, pipeline_from


class Command(ConfigCommand):
    help = "Revoke one signing secret of a pipeline, named by its hint (last four characters) or id."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        add_pipeline_argument(parser)
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--hint", help="the last four characters, as list_pipelines and the admin show them")
        which.add_argument("--id", type=int, dest="secret_id", help="the secret's id")

    def run(self, **options: Any) -> dict[str, Any]:
        pipeline = pipeline_from(options)
        secret = services.secret_revoke_one(
            pipeline=pipeline, hint=options["hint"] or "", secret_id=options["secret_id"]
        )
        return {
            "pipeline_id": pipeline.id,
            "revoked_secret_id": secret.pk,
            "revoked_hint": secret.hint,
            "active_hints": list(pipeline.signing_secrets.filter(status="active").values_list("hint", flat=True)),
        }
