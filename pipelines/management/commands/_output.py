"""Shared output for the configuration commands: one JSON object with --json, lines otherwise."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pipelines.checks import secret_settings_errors
from pipelines.services import ConfigError


class ConfigCommand(BaseCommand):
    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def one_line_error(message: str) -> None:
            # argparse would print the whole usage block first; one line is easier to act on.
            parser.exit(2, f"{subcommand}: error: {message} (see --help)\n")

        parser.error = one_line_error  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def check(self, *args: Any, **kwargs: Any) -> None:
        # A bad ENCRYPTION_KEY is one line naming the variable, not Django's block of check output.
        errors = secret_settings_errors()
        if errors:
            raise CommandError("; ".join(f"{error.msg} ({error.id})" for error in errors))
        super().check(*args, **kwargs)

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
