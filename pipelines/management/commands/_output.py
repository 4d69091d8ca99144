"""Shared output for the configuration commands: one JSON object with --json, lines otherwise."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pipelines.services import ConfigError


class ConfigCommand(BaseCommand):
    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")

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
