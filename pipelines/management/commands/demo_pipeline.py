from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from pipelines import services
from pipelines.models import Pipeline, Status


class Command(BaseCommand):
    help = "Print the demo pipeline's active key, creating the pipeline on first use (bin/demo)."

    def handle(self, *args: Any, **options: Any) -> None:
        pipeline = Pipeline.objects.filter(slug="demo").first()
        if pipeline is None:
            self.stdout.write(services.pipeline_create(name="Demo").pipeline_key)
            return
        key = pipeline.keys.filter(status=Status.ACTIVE).first() or services.key_create(pipeline=pipeline)
        self.stdout.write(key.key)
