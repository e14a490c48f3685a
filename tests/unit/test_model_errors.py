"""A mistyped model answers like every other field: the allowed values, not pydantic's words."""

from __future__ import annotations

import pytest

from prefect_runway.errors import InvalidRequest


def test_a_mistyped_model_answers_with_the_allowed_values():
    from prefect_runway.models import Shot, VideoRequest

    for build in (lambda: Shot(still_prompt="a", video_model="gen4_turbbo"),
                  lambda: VideoRequest(image="https://example.com/a.png", model="gen4_turbbo")):
        with pytest.raises(InvalidRequest) as caught:
            build()
        text = str(caught.value)
        assert "Input should be" not in text
        assert "'gen4_turbbo' is not allowed" in text and "allowed: " in text
        assert "gen4_turbo" in text.split("allowed: ", 1)[1]
