"""A flow process for the daily-budget test: a storyboard on Runway whose block has a daily budget.

Configured by environment: BUDGET_URL (emulator), BUDGET_OUT (storage dir, shared by the
runs), BUDGET_TOKEN (in every prompt), BUDGET_SHOTS (how many shots), BUDGET_DAILY (the
block's daily budget), BUDGET_GO (a file: the storyboard starts once it exists, so that
two processes start together). Prints ``READY`` once imported, then one line of JSON:
``{"completed": n, "not_started": n}``, or ``{"refused": "<message>"}`` when the plan was
refused before anything was sent.
"""

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from pydantic import SecretStr

from prefect_runway import RunwayCredentials, storyboard
from prefect_runway.errors import BudgetExceeded, StoryboardFailed


async def main() -> dict[str, object]:
    credentials = RunwayCredentials(
        api_key=SecretStr("daily-budget-key"), base_url=os.environ["BUDGET_URL"],
        poll_interval_seconds=0.1, max_poll_interval_seconds=0.3, wait_timeout_seconds=60,
        daily_budget=float(os.environ["BUDGET_DAILY"]),
    )
    token = os.environ["BUDGET_TOKEN"]
    shots = [
        {"name": f"shot-{i}", "still_prompt": f"harbour {token} shot {i} @hero",
         "motion_prompt": "slow push in", "seed": i + 1, "ratio": "1280:720", "duration": 5,
         "reference_images": [{"uri": "https://example.com/ref.png", "tag": "hero"}]}
        for i in range(int(os.environ["BUDGET_SHOTS"]))
    ]
    try:
        summary = await storyboard(shots=shots, credentials=credentials,
                                   storage=os.environ["BUDGET_OUT"], concurrency=len(shots),
                                   preview=None, progress=False, check_balance=False)
    except BudgetExceeded as exc:
        return {"refused": str(exc)}
    except StoryboardFailed as exc:
        summary = exc.summary
    return {"completed": summary.completed, "not_started": summary.not_started}


if __name__ == "__main__":
    print("READY", flush=True)
    go = Path(os.environ["BUDGET_GO"])
    deadline = time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:  # bounded; not in async code
        time.sleep(0.05)
    outcome = asyncio.run(main())
    print(json.dumps(outcome), flush=True)
    sys.exit(0)
