from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from pipelines.selectors import pipelines_overview


class Command(BaseCommand):
    help = "List pipelines with their active keys, origins and webhook sources."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help='print {"pipelines": [...]}')

    def handle(self, *args: Any, **options: Any) -> None:
        rows = pipelines_overview()
        if options["json"]:
            self.stdout.write(json.dumps({"pipelines": rows}))
            return
        for row in rows:
            self.stdout.write(
                f"{row['pipeline_id']}  {row['name']}  enabled={row['enabled']}  keys={','.join(row['active_keys'])}"
                f"  origins={','.join(row['origins']) or '*'}"
            )
