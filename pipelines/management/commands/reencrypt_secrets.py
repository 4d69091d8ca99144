from __future__ import annotations

from typing import Any

from pipelines import services
from pipelines.management.commands._output import ConfigCommand


class Command(ConfigCommand):
    help = (
        "Re-encrypt every stored secret under ENCRYPTION_KEY. Run with the old key in "
        "ENCRYPTION_KEY_PREVIOUS; afterwards the previous key can be dropped."
    )

    def run(self, **options: Any) -> dict[str, Any]:
        return {"reencrypted": services.secrets_reencrypt()}
