"""Webhooks inside ``serve``: the secret check at start, and the delivering task.

``webhook_secret(settings, policies)`` reads ``PENGUIFLOW_WEBHOOK_SECRET``
and refuses to start (``ConfigError``) when notify URLs are configured (a
policy rule's ``notify`` or ``--notify``) but the secret is unset or short:
nothing is ever sent unsigned. ``delivering(store, secret)`` runs a
``WebhookDeliverer`` over the store's outbox for the app's lifetime (also
when no URL is configured now, as long as a secret is: entries written
earlier are still delivered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.webhooks import check_notify_url, delivering, webhook_secret_from_env

if TYPE_CHECKING:
    from penguiflow_agents.policy import PolicySet
    from penguiflow_agents.server._settings import ServerSettings

__all__ = ["check_serve_webhooks", "delivering", "webhook_secret"]


def webhook_secret(settings: ServerSettings, policies: PolicySet) -> str | None:
    """The signing secret; ``ConfigError`` when URLs are configured and it is missing."""
    urls = [*settings.notify, *policies.notify_urls()]
    return webhook_secret_from_env(required=bool(urls))


def check_serve_webhooks(settings: ServerSettings) -> None:
    """Before ``serve`` starts: each ``--notify`` URL is usable (``UserError``), and the
    secret is set when any URL is configured (``ConfigError``); loads the policies to see."""
    from penguiflow_agents.policy import PolicySet

    for url in settings.notify:
        try:
            check_notify_url(url)
        except ValueError as exc:
            raise UserError(f"--notify: {exc}.") from None
    webhook_secret(settings, PolicySet.load_dir(settings.policies))
