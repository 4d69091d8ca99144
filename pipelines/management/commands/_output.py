"""What every configuration command shares: one JSON object with --json (lines otherwise), bad
arguments and refusals as one line on stderr with nothing changed, and the audit trail's actor."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pipelines import audit, services
from pipelines.checks import secret_settings_errors
from pipelines.models import Pipeline
from pipelines.services import ConfigError


class ConfigCommand(BaseCommand):
    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def one_line_error(message: str) -> None:
            # argparse would print the whole usage block first; one line is easier to act on.
            parser.exit(2, f"{subcommand}: error: {message} (see --help)\n")

        parser.error = one_line_error  # type: ignore[method-assign]
        return parser

    @property
    def command_name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def check(self, *args: Any, **kwargs: Any) -> None:
        # A bad ENCRYPTION_KEY is one line naming the variable, not Django's block of check output.
        errors = secret_settings_errors()
        if errors:
            raise CommandError("; ".join(f"{error.msg} ({error.id})" for error in errors))
        super().check(*args, **kwargs)

    def execute(self, *args: Any, **options: Any) -> Any:
        with audit.acting_as(audit.command_actor(self.command_name)):
            return super().execute(*args, **options)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = self.run(**options)
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            for name, value in result.items():
                self.stdout.write(f"{name}: {value}")

    def run(self, **options: Any) -> dict[str, Any]:
        raise NotImplementedError


def add_pipeline_argument(parser: Any) -> None:
    """``--pipeline pip_…`` or ``--pipeline-key dk_…``, exactly one."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--pipeline", help="the pipeline's id (pip_…)")
    group.add_argument("--pipeline-key", help="any of the pipeline's keys (dk_…)")


def pipeline_from(options: dict[str, Any]) -> Pipeline:
    return services.pipeline_get(ref=options["pipeline"] or options["pipeline_key"])
