"""A flow run reads a saved credentials block once when both steps use it (each read is a
Prefect API call in every flow run of a nightly batch)."""

from __future__ import annotations

import uuid

from prefect_runway import SegmindCredentials, image_to_video


async def test_one_saved_block_for_both_steps_is_read_once(segmind_credentials, tmp_path,
                                                          monkeypatch):
    name = f"both-steps-{uuid.uuid4().hex[:8]}"
    await segmind_credentials.save(name)
    real = SegmindCredentials.aload.__func__  # the real load, counted
    loads: list[str] = []

    async def counted(cls, block_name, *args, **kwargs):
        loads.append(block_name)
        return await real(cls, block_name, *args, **kwargs)

    monkeypatch.setattr(SegmindCredentials, "aload", classmethod(counted))
    out = await image_to_video(
        still_prompt=f"@hero at a harbour at dawn {name}", motion_prompt="slow pan", seed=3,
        credentials=f"segmind-credentials/{name}", storage=str(tmp_path),
        still={"reference_images": [{"uri": "https://example.com/ref.png", "tag": "hero"}]},
        run={"check_balance": False, "progress": False})
    assert out.video is not None and out.video.provider == "segmind"
    assert loads == [name]
