"""kopf handlers. Importing this package registers them with kopf's default registry."""

from walwarden.handlers import requests, schedules, startup  # noqa: F401  (registration by import)
