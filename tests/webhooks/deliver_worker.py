"""A delivering process for test_delivery_processes.py: runs a WebhookDeliverer until killed.

Usage: python deliver_worker.py STORE_URL INITIAL_BACKOFF_S
The secret comes from PENGUIFLOW_WEBHOOK_SECRET, as in `serve`. Prints "ready" once running.
"""

from __future__ import annotations

import asyncio
import sys

from penguiflow_agents import WebhookDeliverer, open_store
from penguiflow_agents.webhooks import webhook_secret_from_env


async def main(store_url: str, initial_backoff_s: float) -> None:
    secret = webhook_secret_from_env(required=True)
    assert secret is not None
    store = await open_store(store_url)
    deliverer = WebhookDeliverer(
        store,
        secret=secret,
        initial_backoff_s=initial_backoff_s,
        timeout_s=5.0,
        lease_s=6.0,
        poll_interval_s=0.1,
    )
    print("ready", flush=True)
    await deliverer.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
