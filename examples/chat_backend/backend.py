"""A chat assistant's backend talking to `penguiflow-agents serve` over HTTP.

    export PENGUIFLOW_URL=http://127.0.0.1:8000     # where `penguiflow-agents serve` listens
    export PENGUIFLOW_KEY=...                       # a key from `penguiflow-agents keys add`
    export PENGUIFLOW_APPROVER_KEY=...              # optional: an approver's key (see below)
    python examples/chat_backend/backend.py "Our 09:30 meeting moves 90 minutes later ..."

1. starts a run (`POST /v1/runs`) and streams its events (`GET /v1/runs/{id}/events`,
   server-sent events), printing each one as it arrives;
2. when the run pauses for an approval, prints the approval's id; with an approver's key it
   approves it (`POST /v1/approvals/{id}/decision`) and follows the resumed run, reconnecting
   with `Last-Event-ID` so that no event is missed or repeated;
3. asks the same question through the OpenAI-compatible endpoint with the `openai` client,
   streamed, and prints the reply and the `penguiflow` field (run id, status, approvals).

Only httpx and openai are needed on the backend's side; the tools run on the server, under the
policy of the key's tenant and roles.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx
from openai import OpenAI

# Longest wait for one HTTP answer; an event stream may stay quiet longer between events.
HTTP_TIMEOUT_S = 30.0
STREAM_READ_TIMEOUT_S = 300.0


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of each server-sent event of a streaming response."""
    event_id, kind, data = "", "message", []
    for line in response.iter_lines():
        if not line:  # a blank line ends an event
            if data:
                yield event_id, kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith(":"):
            continue  # a comment (keep-alive)
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                event_id = value
            elif field == "event":
                kind = value
            elif field == "data":
                data.append(value)


def follow(api: httpx.Client, run_id: str, last_event_id: str | None) -> tuple[str | None, str]:
    """Print a run's events until it pauses or finishes; returns (last event id, last kind)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    timeout = httpx.Timeout(HTTP_TIMEOUT_S, read=STREAM_READ_TIMEOUT_S)
    kind = ""
    with api.stream("GET", f"/v1/runs/{run_id}/events", headers=headers, timeout=timeout) as r:
        r.raise_for_status()
        for last_event_id, kind, data in sse_events(r):
            print(f"  [{last_event_id}] {kind}: {summary(kind, data)}")
    return last_event_id, kind


def summary(kind: str, data: dict[str, Any]) -> str:
    if kind in ("tool_call_started", "tool_call_finished"):
        outcome = data.get("outcome", "")
        return f"{data.get('tool')} {json.dumps(data.get('arguments'))} {outcome}".strip()
    if kind == "text_delta":
        return repr(data.get("text"))
    if kind == "final_answer":
        return str(data.get("answer"))
    if kind == "paused":
        return "waiting for " + ", ".join(p["id"] for p in data.get("pending_approvals", []))
    if kind == "run_finished":
        return str(data.get("status"))
    return json.dumps(data)[:120]


def main(question: str) -> int:
    url = os.environ.get("PENGUIFLOW_URL", "http://127.0.0.1:8000")
    key = os.environ["PENGUIFLOW_KEY"]
    approver_key = os.environ.get("PENGUIFLOW_APPROVER_KEY")
    bearer = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=bearer, timeout=HTTP_TIMEOUT_S) as api:
        # 1. start a run; it goes on in the server while we stream its events
        started = api.post("/v1/runs", json={"query": question})
        started.raise_for_status()
        run_id = started.json()["run_id"]
        print(f"run {run_id} started")
        last_id, kind = follow(api, run_id, None)

        # 2. a pause: someone else decides (here: the approver's key, when we have one)
        while kind == "paused":
            run = api.get(f"/v1/runs/{run_id}").json()
            for pending in run["pending_approvals"]:
                print(f"approval needed: {pending['id']} for {pending['tool']}")
                if approver_key is None:
                    print("set PENGUIFLOW_APPROVER_KEY to approve it from here, or use /inbox")
                    continue
                decided = httpx.post(
                    f"{url}/v1/approvals/{pending['id']}/decision",
                    headers={"Authorization": f"Bearer {approver_key}"},
                    json={"decision": "approve"},
                    timeout=HTTP_TIMEOUT_S,
                )
                decided.raise_for_status()
                print(f"approval {pending['id']}: {decided.json()['status']}")
            if approver_key is None:
                break
            last_id, kind = follow(api, run_id, last_id)  # resumes after the last event seen
        run = api.get(f"/v1/runs/{run_id}").json()
        print(f"run {run_id}: {run['status']}; answer: {run['answer']}")

    # 3. the same question through the OpenAI-compatible endpoint
    client = OpenAI(base_url=f"{url}/v1", api_key=key, timeout=STREAM_READ_TIMEOUT_S)
    stream = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": question}], stream=True
    )
    print("openai: ", end="")
    extension: dict[str, Any] = {}
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
        extension = (chunk.model_extra or {}).get("penguiflow", extension)
    print(f"\nopenai penguiflow field: {json.dumps(extension)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(" ".join(sys.argv[1:]) or "What time is it in Tokyo?"))
