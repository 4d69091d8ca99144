from __future__ import annotations

import argparse
from typing import Any

from pipelines import services
from pipelines.management.commands._output import ConfigCommand, add_pipeline_argument, pipeline_from
from pipelines.models import Pipeline


class Command(ConfigCommand):
    help = "Set a pipeline's consent-required flag and IP mode (either or both)."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        add_pipeline_argument(parser)
        parser.add_argument(
            "--consent-required",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="treat missing consent as denied (--no-consent-required: as not denied)",
        )
        parser.add_argument(
            "--ip-mode",
            choices=Pipeline.IpMode.values,
            help="full keeps the address, truncate keeps IPv4 /24 and IPv6 /48, drop leaves it out",
        )

    def run(self, **options: Any) -> dict[str, Any]:
        pipeline = services.pipeline_set_privacy(
            pipeline=pipeline_from(options),
            consent_required=options["consent_required"],
            ip_mode=options["ip_mode"],
        )
        return {"pipeline_id": pipeline.id, "consent_required": pipeline.consent_required, "ip_mode": pipeline.ip_mode}
