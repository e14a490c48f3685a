"""Chaos: 200 generations through the flows while 20% of all calls fail in production's ways.

Every generation must end stored-and-verified or failed with a typed reason; no paid job may
be submitted twice; no stored file may be corrupt.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections import Counter
from pathlib import Path

import av
import pytest
from PIL import Image
from prefect import flow
from pydantic import SecretStr

from prefect_runway import (
    AimlapiCredentials,
    ImageRequest,
    RunwayCredentials,
    RunwayError,
    SegmindCredentials,
    VideoRequest,
)
from prefect_runway.emulator import Emulator, EmulatorConfig
from prefect_runway.flows import run_generation
from prefect_runway.models import bytes_to_data_uri

FAULTS = {  # 20% of every call, API routes and media downloads alike
    "429": 0.06, "500": 0.02, "502": 0.03, "503": 0.03, "reset": 0.02,
    "reset_after": 0.01, "truncate": 0.03,
}
REF = [{"uri": "https://example.com/ref.png", "tag": "hero"}]


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 320), color).save(buf, "PNG")
    return buf.getvalue()


def _check_file(path: str, sha256: str, media_type: str) -> None:
    data = Path(path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha256, f"{path} does not match its sha256"
    if media_type == "image/png":
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    else:
        with av.open(path) as container:
            assert sum(1 for _ in container.decode(video=0)) > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_200_generations_under_20_percent_faults(tmp_path):
    # Stock media (one still and one video per size, made once): what is under test is the
    # flows' handling of faults and of the bytes they download, not the emulator's drawing.
    config = EmulatorConfig(latency=0.3, video_fps=2, runway_concurrency=50, media_workers=2,
                            stock_media=True)
    with Emulator(config) as emu:
        kw = dict(
            api_key=SecretStr("chaos-key"), base_url=emu.url, poll_interval_seconds=0.2,
            max_poll_interval_seconds=1.0, wait_timeout_seconds=240, max_requests_per_second=400,
        )
        creds = {
            "segmind": SegmindCredentials(**kw),
            "aimlapi": AimlapiCredentials(**kw),
            "aimlapi-legacy": AimlapiCredentials(route="legacy", **kw),
            "runway": RunwayCredentials(**kw),
        }
        # A still to animate on Segmind (which needs a URL), made before the faults start.
        async with creds["segmind"].get_client() as client:
            gen = await client.submit(ImageRequest(prompt="chaos base @hero", reference_images=REF))
            base_url_still = (await client.wait(gen)).outputs[0]
        data_uri = bytes_to_data_uri(_png((30, 90, 160)))

        jobs: list[tuple[str, object]] = []
        for i in range(200):
            pick = i % 8
            if pick in (0, 1):
                jobs.append(("segmind", ImageRequest(prompt=f"chaos still {i} @hero", reference_images=REF,
                                                     ratio="960:960", seed=i + 1)))
            elif pick in (2, 3):
                jobs.append(("runway", ImageRequest(prompt=f"chaos still {i}", ratio="720:720", seed=i)))
            elif pick == 4:
                jobs.append(("segmind", VideoRequest(image=base_url_still, prompt=f"chaos video {i}",
                                                     ratio="960:960", seed=i + 1)))
            elif pick == 5:
                jobs.append(("runway", VideoRequest(image=data_uri, prompt=f"chaos video {i}",
                                                    ratio="960:960", seed=i)))
            elif pick == 6:
                jobs.append(("aimlapi", VideoRequest(image=data_uri, prompt=f"chaos video {i}",
                                                     ratio="1:1", seed=i)))
            else:
                jobs.append(("aimlapi-legacy", VideoRequest(image=data_uri, prompt=f"chaos video {i}",
                                                            model="gen3a_turbo", seed=i)))
        emu.set_faults(random=FAULTS, seed=1234, retry_after=0.2)

        @flow(name="chaos")
        async def chaos():
            gate = asyncio.Semaphore(40)

            async def one(provider, request):
                async with gate:
                    try:
                        _, stored = await run_generation(request, creds[provider], storage=str(tmp_path))
                        return ("stored", stored)
                    except RunwayError as exc:
                        return ("failed", exc)

            return await asyncio.gather(*(one(p, r) for p, r in jobs))

        outcomes = await asyncio.wait_for(chaos(), timeout=240)
        stats = emu.stats()
        emu.clear_faults()

    assert len(outcomes) == 200
    stored = [o for kind, out in outcomes if kind == "stored" for o in out]
    failed = [exc for kind, exc in outcomes if kind == "failed"]
    reasons = Counter(type(exc).__name__ for exc in failed)
    print(f"stored {len(stored)}, failed {len(failed)}: {dict(reasons)}")
    print({p: (stats[p]["total_submissions"], stats[p]["faults"]) for p in ("segmind", "aimlapi", "runway")})
    for exc in failed:  # a failure always says why, typed
        assert str(exc)
    for out in stored:
        _check_file(out.location, out.sha256, out.media_type)
    for provider in ("segmind", "aimlapi", "runway"):
        assert stats[provider]["duplicate_submissions"] == 0, provider
        assert sum(stats[provider]["faults"].values()) > 0, f"no faults were injected for {provider}"
    # Nothing half-written is left where outputs land.
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".part")]
    # Every fault a retry can cure was cured: the only failures are submits whose answer was
    # lost after sending (500/502/504, reset, truncated answer), which are never resent.
    assert set(reasons) <= {"SubmissionUncertain"}, dict(reasons)
    assert all(len(exc.fingerprint) == 64 for exc in failed)
    assert len(stored) >= 140, dict(reasons)
