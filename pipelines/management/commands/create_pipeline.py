from __future__ import annotations

from typing import Any

from pipelines import services
from pipelines.management.commands._output import ConfigCommand
from pipelines.models import Pipeline


class Command(ConfigCommand):
    help = "Create a pipeline with a key and a signing secret (the secret is shown only now)."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument("--name", required=True)
        parser.add_argument("--origin", action="append", default=[], help="allowed browser origin; repeatable")
        parser.add_argument("--rate-limit", type=int, default=1000, help="events per second")
        parser.add_argument("--no-dedup", action="store_true")
        parser.add_argument("--type", default="web", choices=["web", "app", "server"])
        parser.add_argument("--cookie-domain", default="")
        parser.add_argument(
            "--consent-required", action="store_true", help="treat missing consent as denied (only _dfid is set)"
        )
        parser.add_argument(
            "--ip-mode", default=Pipeline.IpMode.FULL, choices=Pipeline.IpMode.values, help="what happens to client IPs"
        )

    def run(self, **options: Any) -> dict[str, Any]:
        created = services.pipeline_create(
            name=options["name"],
            origins=options["origin"],
            pipeline_type=options["type"],
            rate_limit_rps=options["rate_limit"],
            dedup_enabled=not options["no_dedup"],
            cookie_domain=options["cookie_domain"],
            consent_required=options["consent_required"],
            ip_mode=options["ip_mode"],
        )
        return {
            "pipeline_id": created.pipeline.id,
            "pipeline_key": created.pipeline_key,
            "signing_secret": created.signing_secret,
            "consent_required": created.pipeline.consent_required,
            "ip_mode": created.pipeline.ip_mode,
        }
