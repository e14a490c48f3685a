"""A flow process for the exactly-once tests: image_to_video or a storyboard on Segmind.

Configured by environment: LEDGER_URL (emulator), LEDGER_OUT (storage dir), LEDGER_PROMPT,
LEDGER_MODE (``i2v`` or ``storyboard``), LEDGER_SHOTS (storyboard: how many shots).
Prints ``READY`` once imported, then ``DONE`` or ``DOUBT <fingerprint>``.
"""

import asyncio
import os
import sys

from pydantic import SecretStr

from prefect_runway import SegmindCredentials, StoryboardFailed, image_to_video, storyboard
from prefect_runway.errors import SubmissionInDoubt


async def main() -> int:
    credentials = SegmindCredentials(
        api_key=SecretStr("ledger-test-key"), base_url=os.environ["LEDGER_URL"],
        poll_interval_seconds=0.1, max_poll_interval_seconds=0.3, wait_timeout_seconds=60,
    )
    prompt = os.environ["LEDGER_PROMPT"]
    print("READY", flush=True)
    try:
        if os.environ.get("LEDGER_MODE") == "storyboard":
            shots = [
                {"name": f"shot-{i}", "still_prompt": f"{prompt} shot {i} @hero",
                 "motion_prompt": "slow push in", "seed": i + 1,
                 "reference_images": [{"uri": "https://example.com/ref.png", "tag": "hero"}]}
                for i in range(int(os.environ.get("LEDGER_SHOTS", "3")))
            ]
            await storyboard(shots=shots, credentials=credentials,
                             storage=os.environ["LEDGER_OUT"], concurrency=4)
        else:
            await image_to_video(
                still_prompt=prompt + " @hero", motion_prompt="slow push in",
                credentials=credentials, seed=7,
                reference_images=[{"uri": "https://example.com/ref.png", "tag": "hero"}],
                storage=os.environ["LEDGER_OUT"],
            )
    except SubmissionInDoubt as exc:
        print("DOUBT", exc.fingerprint, flush=True)
        return 3
    except StoryboardFailed as exc:
        print("FAILED", exc, flush=True)
        return 4
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
