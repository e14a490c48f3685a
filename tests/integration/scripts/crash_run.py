"""A flow process for the crash tests: runs image_to_video on Segmind against the emulator.

Configured by environment: CRASH_URL (emulator), CRASH_OUT (storage dir), CRASH_PROMPT.
"""

import asyncio
import os

from pydantic import SecretStr

from prefect_runway import SegmindCredentials, image_to_video


async def main() -> None:
    credentials = SegmindCredentials(
        api_key=SecretStr("crash-test-key"), base_url=os.environ["CRASH_URL"],
        poll_interval_seconds=0.2, max_poll_interval_seconds=0.5,
    )
    result = await image_to_video(
        still_prompt=os.environ["CRASH_PROMPT"] + " @hero",
        motion_prompt="slow push in",
        credentials=credentials,
        reference_images=[{"uri": "https://example.com/ref.png", "tag": "hero"}],
        seed=31,
        storage=os.environ["CRASH_OUT"],
    )
    print("DONE", result.still.location, result.video.location, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
