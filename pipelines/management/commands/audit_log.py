from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from pipelines.selectors import audit_entries


class Command(BaseCommand):
    help = "Print the configuration audit trail, newest first: who changed what, before and after."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print a JSON list of entries")
        parser.add_argument("--limit", type=int, default=100, help="how many entries (default 100)")
        parser.add_argument("--pipeline", default="", help="only entries about this pipeline id (pip_…)")

    def handle(self, *args: Any, **options: Any) -> None:
        entries = audit_entries(limit=max(0, options["limit"]), pipeline_id=options["pipeline"])
        if options["json"]:
            self.stdout.write(json.dumps(entries))
            return
        for entry in entries:
            changed = ", ".join(
                f"{field}: {json.dumps(before)} -> {json.dumps(after)}"
                for field, (before, after) in entry["changes"].items()
            )
            self.stdout.write(
                f"{entry['at']}  {entry['actor']}  {entry['action']} {entry['object_type']} "
                f"{entry['object_id']}  {changed}"
            )
