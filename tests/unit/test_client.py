"""The HTTP engine (prefect_runway.engine) against httpx.MockTransport: no sockets at all.

Each test scripts the provider's answers, then checks what the client sent (how many POSTs,
which headers) and what it raised.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from prefect_runway.engine import GenerationClient, PollSchedule, RetryPolicy
from prefect_runway.engine.ratelimit import RateLimiter
from prefect_runway.engine.transport import retry_after as _retry_after
from prefect_runway.errors import (
    AuthenticationError,
    DownloadError,
    GenerationExpired,
    GenerationFailed,
    GenerationTimedOut,
    InsufficientCredits,
    InvalidRequest,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SubmissionUncertain,
)
from prefect_runway.models import Generation, JobState, VideoRequest
from prefect_runway.providers.segmind import SegmindProvider

KEY = "sk-test-KEY-9f8e7d6c5b4a"
BASE = "https://api.segmind.com"
IMAGE_URL = "https://img.example.com/still.png"
JOB = "req-123"
STATUS_URL = f"{BASE}/v2/requests/{JOB}/status"
RESULT_URL = f"{BASE}/v2/requests/{JOB}"
OUTPUT_URL = "https://cdn.example.com/out/abc.mp4?X-Amz-Signature=sig"
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01, deadline=5.0)
FAST_POLL = PollSchedule(interval=0.001, max_interval=0.002, timeout=5.0)

MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00\x00\x00\x00mp42isom" + os.urandom(200_000)
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(5000)

SUBMIT_OK = {
    "request_id": JOB,
    "status": "QUEUED",
    "poll_url": STATUS_URL,
    "status_url": STATUS_URL,
    "response_url": RESULT_URL,
}


class Recorder:
    """A MockTransport handler that answers from a script and records every request."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer) and not isinstance(answer, httpx.Response):
            answer = answer(request)
        if isinstance(answer, type) and issubclass(answer, Exception):
            raise answer("simulated", request=request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def methods(self, method: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method]


def make_client(handler, **kw) -> GenerationClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("poll", FAST_POLL)
    return GenerationClient(SegmindProvider(), SecretStr(KEY), http=http, **kw)


def request() -> VideoRequest:
    return VideoRequest(model="gen4_turbo", image=IMAGE_URL, prompt="slow dolly in", seed=7)


def generation() -> Generation:
    return Generation(
        provider="segmind", model="gen4_turbo", kind="video", job_id=JOB, fingerprint="f" * 64,
        base_url=BASE, status_url=STATUS_URL, result_url=RESULT_URL,
    )


def js(code: int, body, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(code, json=body, headers=headers)


def no_secret(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)
    assert KEY not in repr(vars(exc))


async def run(client: GenerationClient, coro_fn):
    async with client:
        try:
            return await coro_fn(client)
        finally:
            await client.http.aclose()


# ---- submit --------------------------------------------------------------------------------


async def test_submit_sends_the_body_with_the_key_header():
    rec = Recorder(js(200, SUBMIT_OK))
    client = make_client(rec)
    gen = await run(client, lambda c: c.submit(request()))
    assert gen.job_id == JOB
    assert gen.fingerprint == client.prepare(request()).fingerprint
    (post,) = rec.requests
    assert post.method == "POST"
    assert str(post.url) == f"{BASE}/v2/runway-gen4-turbo"
    assert post.headers["x-api-key"] == KEY
    assert json.loads(post.content) == client.prepare(request()).body


async def test_invalid_request_sends_nothing():
    rec = Recorder(js(200, SUBMIT_OK))
    bad = VideoRequest(model="gen4_turbo", image=IMAGE_URL, prompt="x", seed=0)  # Segmind: 1-99999
    with pytest.raises(InvalidRequest):
        await run(make_client(rec), lambda c: c.submit(bad))
    assert rec.requests == []


@pytest.mark.parametrize(
    "first",
    [httpx.ConnectError, httpx.ConnectTimeout, js(429, {"message": "slow down"}, {"Retry-After": "0"}),
     js(503, {"message": "unavailable"})],
    ids=["ConnectError", "ConnectTimeout", "429", "503"],
)
async def test_submit_retried_when_the_provider_provably_did_not_take_it(first):
    rec = Recorder(first, first, js(200, SUBMIT_OK))
    gen = await run(make_client(rec), lambda c: c.submit(request()))
    assert gen.job_id == JOB
    assert len(rec.methods("POST")) == 3


@pytest.mark.parametrize(
    "answer",
    [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteTimeout,
     js(500, {"message": "boom"}), js(502, {"message": "bad gateway"}),
     js(504, {"message": "timeout"})],
    ids=["ReadTimeout", "RemoteProtocolError", "ReadError", "WriteTimeout", "500", "502", "504"],
)
async def test_submit_with_unknown_outcome_is_uncertain_and_not_resent(answer):
    rec = Recorder(answer, js(200, SUBMIT_OK))
    client = make_client(rec)
    with pytest.raises(SubmissionUncertain) as info:
        await run(client, lambda c: c.submit(request()))
    assert len(rec.methods("POST")) == 1
    assert info.value.fingerprint == client.prepare(request()).fingerprint
    assert info.value.fingerprint in str(info.value)
    assert not info.value.retryable
    no_secret(info.value)


async def test_submit_2xx_unreadable_is_uncertain():
    rec = Recorder(httpx.Response(200, text="<html>ok</html>"))
    with pytest.raises(SubmissionUncertain):
        await run(make_client(rec), lambda c: c.submit(request()))
    assert len(rec.methods("POST")) == 1


@pytest.mark.parametrize(
    ("code", "exc"),
    [(401, AuthenticationError), (403, AuthenticationError), (406, InsufficientCredits),
     (400, ProviderRejected)],
)
async def test_submit_client_errors_are_typed_and_not_retried(code, exc):
    rec = Recorder(js(code, {"message": "no"}), js(200, SUBMIT_OK))
    with pytest.raises(exc) as info:
        await run(make_client(rec), lambda c: c.submit(request()))
    assert len(rec.methods("POST")) == 1
    assert info.value.status_code == code
    no_secret(info.value)


async def test_submit_429_budget_exhausted_is_rate_limited():
    rec = Recorder(js(429, {"message": "slow down"}, {"Retry-After": "0"}))
    with pytest.raises(RateLimited) as info:
        await run(make_client(rec), lambda c: c.submit(request()))
    assert len(rec.methods("POST")) == FAST_RETRY.max_attempts
    assert info.value.retry_after == 0.0


async def test_submit_503_budget_exhausted_is_unavailable():
    rec = Recorder(js(503, {"message": "down"}))
    with pytest.raises(ProviderUnavailable):
        await run(make_client(rec), lambda c: c.submit(request()))
    assert len(rec.methods("POST")) == FAST_RETRY.max_attempts


async def test_submit_connect_error_budget_exhausted_is_unavailable():
    rec = Recorder(httpx.ConnectError)
    with pytest.raises(ProviderUnavailable) as info:
        await run(make_client(rec), lambda c: c.submit(request()))
    assert len(rec.methods("POST")) == FAST_RETRY.max_attempts
    no_secret(info.value)


async def test_every_request_passes_through_the_limiter():
    entered = []

    class CountingLimiter(RateLimiter):
        def try_take(self) -> float:
            entered.append(1)
            return 0.0

    rec = Recorder(js(503, {}), js(200, SUBMIT_OK))
    await run(make_client(rec, limiter=CountingLimiter(100)), lambda c: c.submit(request()))
    assert len(entered) == len(rec.requests) == 2


# ---- status (reads) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [js(500, {}), js(502, {}), js(503, {}), js(504, {}), js(429, {}, {"Retry-After": "0"}),
     httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError],
    ids=["500", "502", "503", "504", "429", "ConnectError", "ReadTimeout", "RemoteProtocolError"],
)
async def test_status_reads_are_retried_then_succeed(failure):
    rec = Recorder(failure, failure, js(200, {"status": "PROCESSING", "request_id": JOB}))
    update = await run(make_client(rec), lambda c: c.status(generation()))
    assert update.state is JobState.RUNNING
    assert len(rec.requests) == 3
    assert all(r.method == "GET" and str(r.url) == STATUS_URL for r in rec.requests)
    assert rec.requests[0].headers["x-api-key"] == KEY


@pytest.mark.parametrize(
    ("failure", "exc"),
    [(js(500, {"message": "boom"}), ProviderUnavailable), (js(503, {}), ProviderUnavailable),
     (httpx.ReadTimeout, ProviderUnavailable), (httpx.ConnectError, ProviderUnavailable),
     (js(429, {}, {"Retry-After": "0"}), RateLimited)],
    ids=["500", "503", "ReadTimeout", "ConnectError", "429"],
)
async def test_status_retry_budget_exhausted(failure, exc):
    rec = Recorder(failure)
    with pytest.raises(exc) as info:
        await run(make_client(rec), lambda c: c.status(generation()))
    assert len(rec.requests) == FAST_RETRY.max_attempts
    assert info.value.job_id == JOB
    no_secret(info.value)


async def test_status_retry_deadline_bounds_the_attempts():
    policy = RetryPolicy(max_attempts=1000, base_delay=0.001, max_delay=0.002, deadline=0.05)
    rec = Recorder(js(503, {}))
    with pytest.raises(ProviderUnavailable):
        await run(make_client(rec, retry=policy), lambda c: c.status(generation()))
    assert 1 < len(rec.requests) < 1000


async def test_status_404_is_expired_without_retry():
    rec = Recorder(js(404, {"detail": "Not Found"}))
    with pytest.raises(GenerationExpired):
        await run(make_client(rec), lambda c: c.status(generation()))
    assert len(rec.requests) == 1


async def test_status_401_is_authentication_error_without_retry():
    rec = Recorder(js(401, {"message": "Unauthorized: invalid API key"}))
    with pytest.raises(AuthenticationError) as info:
        await run(make_client(rec), lambda c: c.status(generation()))
    assert len(rec.requests) == 1
    no_secret(info.value)


# ---- wait ------------------------------------------------------------------------------------


async def test_wait_queued_processing_completed_then_result_call():
    statuses = iter(["QUEUED", "QUEUED", "PROCESSING", "COMPLETED"])

    def handler(req: httpx.Request) -> httpx.Response:
        if str(req.url) == STATUS_URL:
            return js(200, {"status": next(statuses), "request_id": JOB, "metrics": {}})
        if str(req.url) == RESULT_URL:
            return js(200, {"status": "COMPLETED", "output": OUTPUT_URL, "metrics": {"inference_time": 37.9}})
        return js(404, {})

    rec = Recorder(handler)
    seen: list[JobState] = []

    async def on_update(update):
        seen.append(update.state)

    result = await run(make_client(rec), lambda c: c.wait(generation(), on_update=on_update))
    assert result.state is JobState.SUCCEEDED
    assert result.outputs == [OUTPUT_URL]
    assert result.metrics == {"inference_time": 37.9}
    assert seen == [JobState.PENDING, JobState.RUNNING, JobState.SUCCEEDED]
    urls = [str(r.url) for r in rec.requests]
    assert urls == [STATUS_URL] * 4 + [RESULT_URL]


async def test_wait_uses_output_from_status_without_a_result_call():
    rec = Recorder(js(200, {"status": "COMPLETED", "output": OUTPUT_URL}))
    result = await run(make_client(rec), lambda c: c.wait(generation()))
    assert result.outputs == [OUTPUT_URL]
    assert [str(r.url) for r in rec.requests] == [STATUS_URL]


async def test_wait_failed_422_raises_generation_failed_with_the_message():
    message = "Request blocked by content moderation (RAI): the prompt was flagged."
    rec = Recorder(
        js(200, {"status": "PROCESSING"}),
        js(422, {"status": "FAILED", "request_id": JOB, "error": message}),
    )
    with pytest.raises(GenerationFailed) as info:
        await run(make_client(rec), lambda c: c.wait(generation()))
    assert info.value.detail == message
    assert message in str(info.value)
    assert info.value.job_id == JOB
    assert len(rec.requests) == 2  # a FAILED answer is terminal, not retried


async def test_wait_times_out_carrying_the_job_id():
    rec = Recorder(js(200, {"status": "QUEUED"}))
    with pytest.raises(GenerationTimedOut) as info:
        await run(make_client(rec), lambda c: c.wait(generation(), timeout=0.05))
    assert info.value.job_id == JOB
    assert info.value.timeout == 0.05
    assert info.value.last_status == "QUEUED"
    assert JOB in str(info.value)
    assert rec.requests  # it did poll


async def test_wait_404_is_expired():
    rec = Recorder(js(200, {"status": "QUEUED"}), js(404, {"detail": "Not Found"}))
    with pytest.raises(GenerationExpired):
        await run(make_client(rec), lambda c: c.wait(generation()))


# ---- download -----------------------------------------------------------------------------


def media(data: bytes, content_type: str = "video/mp4", code: int = 200, **headers) -> httpx.Response:
    return httpx.Response(code, content=data, headers={"content-type": content_type, **headers})


async def test_download_writes_the_exact_bytes_and_sha256(tmp_path):
    rec = Recorder(media(MP4))
    got = await run(make_client(rec), lambda c: c.download(OUTPUT_URL, tmp_path, job_id=JOB))
    assert got.path.read_bytes() == MP4
    assert got.size == len(MP4)
    assert got.sha256 == hashlib.sha256(MP4).hexdigest()
    assert got.media_type == "video/mp4"
    assert got.path.parent == tmp_path
    assert "x-api-key" not in rec.requests[0].headers  # the CDN never sees the key


async def test_download_png(tmp_path):
    got = await run(make_client(Recorder(media(PNG, "image/png"))), lambda c: c.download(OUTPUT_URL, tmp_path))
    assert got.media_type == "image/png" and got.path.read_bytes() == PNG


async def test_download_resumes_with_range_after_a_truncated_body(tmp_path):
    cut = 70_001
    total = len(MP4)

    def handler(req: httpx.Request) -> httpx.Response:
        if "range" not in req.headers:
            # Content-Length promises everything; the body stops early.
            return media(MP4[:cut], **{"content-length": str(total)})
        assert req.headers["range"] == f"bytes={cut}-"
        return media(
            MP4[cut:], code=206,
            **{"content-range": f"bytes {cut}-{total - 1}/{total}", "content-length": str(total - cut)},
        )

    rec = Recorder(handler)
    got = await run(make_client(rec), lambda c: c.download(OUTPUT_URL, tmp_path))
    assert got.path.read_bytes() == MP4
    assert got.sha256 == hashlib.sha256(MP4).hexdigest()
    assert got.size == total
    assert [r.headers.get("range") for r in rec.requests] == [None, f"bytes={cut}-"]


class BrokenStream(httpx.AsyncByteStream):
    """Yields the first part of a body, then fails as a dropped connection does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self):
        yield self.data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def breaking_server(data: bytes, cut: int) -> Recorder:
    """Every full GET breaks after ``cut`` bytes; a Range GET gets the rest as a 206."""
    total = len(data)

    def handler(req: httpx.Request) -> httpx.Response:
        if "range" not in req.headers:
            return httpx.Response(
                200, headers={"content-type": "video/mp4", "content-length": str(total)},
                stream=BrokenStream(data[:cut]),
            )
        start = int(req.headers["range"].removeprefix("bytes=").rstrip("-"))
        return media(data[start:], code=206, **{"content-range": f"bytes {start}-{total - 1}/{total}"})

    return Recorder(handler)


async def test_download_resumes_with_range_after_a_mid_body_disconnect(tmp_path):
    big = MP4 + os.urandom(2_500_000)
    rec = breaking_server(big, cut=1_700_001)
    got = await run(make_client(rec), lambda c: c.download(OUTPUT_URL, tmp_path))
    assert got.path.read_bytes() == big
    assert got.sha256 == hashlib.sha256(big).hexdigest()
    assert got.size == len(big)
    assert len(rec.requests) == 2
    assert rec.requests[1].headers["range"].startswith("bytes=")
    assert rec.requests[1].headers["range"] != "bytes=0-"


async def test_download_resume_keeps_every_byte_received_before_the_disconnect(tmp_path):
    cut = 123_457
    rec = breaking_server(MP4, cut)
    got = await run(make_client(rec), lambda c: c.download(OUTPUT_URL, tmp_path))
    assert got.path.read_bytes() == MP4
    assert rec.requests[1].headers["range"] == f"bytes={cut}-"


async def test_download_starts_over_when_the_server_ignores_range(tmp_path):
    cut = 50_000
    total = len(MP4)
    rec = Recorder(media(MP4[:cut], **{"content-length": str(total)}), media(MP4))
    got = await run(make_client(rec), lambda c: c.download(OUTPUT_URL, tmp_path))
    assert got.path.read_bytes() == MP4
    assert got.sha256 == hashlib.sha256(MP4).hexdigest()


async def test_download_starting_over_drops_a_longer_stale_partial(tmp_path):
    # A partial left by a killed run, longer than the real file; the server ignores Range.
    (tmp_path / "stale.part").write_bytes(b"\xff" * (len(MP4) + 10_000))
    rec = Recorder(media(MP4))
    got = await run(
        make_client(rec), lambda c: c.download(OUTPUT_URL, tmp_path, partial_name="stale.part")
    )
    assert rec.requests[0].headers["range"] == f"bytes={len(MP4) + 10_000}-"
    assert got.path.read_bytes() == MP4
    assert got.size == len(MP4) and got.sha256 == hashlib.sha256(MP4).hexdigest()


async def test_download_starts_over_when_a_stale_partial_is_past_the_end(tmp_path):
    (tmp_path / "stale.part").write_bytes(b"\xff" * (len(MP4) + 10_000))
    rec = Recorder(media(b"", code=416, **{"content-range": f"bytes */{len(MP4)}"}), media(MP4))
    got = await run(
        make_client(rec), lambda c: c.download(OUTPUT_URL, tmp_path, partial_name="stale.part")
    )
    assert [r.headers.get("range") for r in rec.requests] == [f"bytes={len(MP4) + 10_000}-", None]
    assert got.path.read_bytes() == MP4 and got.sha256 == hashlib.sha256(MP4).hexdigest()


async def test_download_retries_5xx(tmp_path):
    rec = Recorder(media(b"", code=503), media(MP4))
    got = await run(make_client(rec), lambda c: c.download(OUTPUT_URL, tmp_path))
    assert got.path.read_bytes() == MP4


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, html="<html><body>AccessDenied</body></html>"),
        media(b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", "video/mp4"),
        media(b"GIF89a" + b"\x00" * 100, "video/mp4"),
        media(PNG, "image/png"),  # an image where a video was expected
        media(b"", "video/mp4"),
    ],
    ids=["html", "xml-error", "gif", "png-for-video", "empty"],
)
async def test_download_rejects_wrong_media_and_leaves_no_temp_file(tmp_path, response):
    with pytest.raises(DownloadError) as info:
        await run(
            make_client(Recorder(response)),
            lambda c: c.download(OUTPUT_URL, tmp_path, expected_media=("video/",), job_id=JOB),
        )
    assert list(tmp_path.iterdir()) == []
    assert "sig" not in str(info.value)  # the signed query string is not echoed
    no_secret(info.value)


async def test_download_truncated_beyond_budget_fails_and_leaves_no_temp_file(tmp_path):
    rec = Recorder(media(MP4[:1000], **{"content-length": str(len(MP4))}),
                   lambda r: media(b"", code=206, **{"content-range": f"bytes 1000-1000/{len(MP4)}"}))
    with pytest.raises(DownloadError):
        await run(make_client(rec), lambda c: c.download(OUTPUT_URL, tmp_path))
    assert list(tmp_path.iterdir()) == []


async def test_download_404_fails_without_retry_and_leaves_no_temp_file(tmp_path):
    rec = Recorder(media(b"gone", "text/plain", code=404))
    with pytest.raises(DownloadError) as info:
        await run(make_client(rec), lambda c: c.download(OUTPUT_URL, tmp_path))
    assert info.value.status_code == 404
    assert len(rec.requests) == 1
    assert list(tmp_path.iterdir()) == []


# ---- the key never leaks -----------------------------------------------------------------


async def test_api_key_in_no_exception_across_failure_paths(tmp_path):
    scenarios = [
        (lambda c: c.submit(request()), Recorder(js(401, {"message": "Unauthorized"}))),
        (lambda c: c.submit(request()), Recorder(js(500, {"message": "boom"}))),
        (lambda c: c.submit(request()), Recorder(httpx.ReadTimeout)),
        (lambda c: c.submit(request()), Recorder(httpx.ConnectError)),
        (lambda c: c.submit(request()), Recorder(js(429, {}, {"Retry-After": "0"}))),
        (lambda c: c.status(generation()), Recorder(js(503, {}))),
        (lambda c: c.wait(generation()), Recorder(js(422, {"status": "FAILED", "error": "x"}))),
        (lambda c: c.wait(generation(), timeout=0.01), Recorder(js(200, {"status": "QUEUED"}))),
        (lambda c: c.download(OUTPUT_URL, tmp_path), Recorder(httpx.Response(200, html="<p>no</p>"))),
    ]
    for call, rec in scenarios:
        with pytest.raises(ProviderError) as info:
            await run(make_client(rec), call)
        no_secret(info.value)


async def test_api_key_echoed_by_the_provider_is_scrubbed():
    rec = Recorder(js(401, {"message": f"Unauthorized: invalid API key {KEY}"}))
    with pytest.raises(AuthenticationError) as info:
        await run(make_client(rec), lambda c: c.submit(request()))
    no_secret(info.value)


def test_client_repr_has_no_key():
    client = make_client(Recorder(js(200, {})))
    assert KEY not in repr(client)
    assert KEY not in repr(vars(client))


# ---- RetryPolicy ----------------------------------------------------------------------------


def test_backoff_honours_retry_after():
    policy = RetryPolicy(base_delay=0.5, max_delay=20.0)
    assert policy.backoff(1, retry_after=7.0) == 7.0
    assert policy.backoff(5, retry_after=0.0) == 0.0
    assert policy.backoff(1, retry_after=-3.0) == 0.0


def test_backoff_retry_after_is_capped():
    policy = RetryPolicy(base_delay=0.5, max_delay=20.0)
    assert policy.max_delay <= policy.backoff(1, retry_after=86_400) <= 3 * policy.max_delay


def test_backoff_without_retry_after_is_jittered_and_capped():
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    for attempt in range(1, 30):
        bound = min(4.0, 0.5 * 2 ** (attempt - 1))
        delays = [policy.backoff(attempt) for _ in range(50)]
        assert all(0 <= d <= bound for d in delays)
    assert len({policy.backoff(3) for _ in range(20)}) > 1  # full jitter, not a constant


def test_retry_after_header_parsing():
    def resp(value):
        return httpx.Response(429, headers={"Retry-After": value} if value is not None else {})

    assert _retry_after(resp("0")) == 0.0
    assert _retry_after(resp("2.5")) == 2.5
    assert _retry_after(resp(None)) is None
    assert _retry_after(resp("soon")) is None
    assert _retry_after(resp("Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0  # a date in the past


def test_poll_schedule_delays_grow_to_the_cap():
    schedule = PollSchedule(first_delay=0.5, interval=1.0, max_interval=3.0, multiplier=2.0)
    gen = schedule.delays()
    assert [next(gen) for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_client_needs_async_with_when_it_owns_http():
    client = GenerationClient(SegmindProvider(), SecretStr(KEY))
    with pytest.raises(RuntimeError):
        _ = client.http


async def test_injected_http_client_is_not_closed_by_the_runway_client():
    http = httpx.AsyncClient(transport=httpx.MockTransport(Recorder(js(200, {}))))
    async with GenerationClient(SegmindProvider(), SecretStr(KEY), http=http):
        pass
    assert not http.is_closed
    await http.aclose()


async def test_the_key_goes_only_to_the_api_origin():
    """A status URL that a response points at another host gets no credentials."""
    foreign = generation().model_copy(update={"status_url": "https://evil.example.net/v2/requests/x/status"})
    rec = Recorder(js(200, {"status": "PROCESSING"}))
    async with make_client(rec) as client:
        await client.status(foreign)
        await client.status(generation())
    sent_foreign, sent_home = rec.requests
    assert "x-api-key" not in sent_foreign.headers
    assert sent_home.headers["x-api-key"] == KEY


async def test_download_follows_a_cdn_redirect(tmp_path):
    body = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cdn.example.com":
            return httpx.Response(200, content=body, headers={"content-type": "image/png"})
        return httpx.Response(302, headers={"location": "https://cdn.example.com/still.png"})

    async with make_client(handler) as client:
        got = await client.download("https://api.segmind.com/out/still.png", tmp_path)
    assert got.path.read_bytes() == body


@pytest.mark.parametrize("url", ["http://api.segmind.example", "not a url"])
def test_a_client_refuses_a_base_url_the_key_must_not_go_to_before_sending(url):
    rec = Recorder(js(200, SUBMIT_OK))
    with pytest.raises(InvalidRequest) as info:
        make_client(rec, base_url=url)
    assert info.value.field == "base_url"
    assert rec.requests == []


async def test_the_key_is_scrubbed_from_what_is_raised_never_from_what_is_parsed():
    """A provider that put our key in an output URL's query (say, to sign it): the URL is
    downloaded as given; a failure message echoing the key is raised without it."""
    signed = f"https://cdn.example.com/out/abc.mp4?token={KEY}"
    rec = Recorder(js(200, {"status": "COMPLETED", "output": signed}))
    result = await run(make_client(rec), lambda c: c.wait(generation()))
    assert result.outputs == [signed]
    failed = Recorder(js(422, {"status": "FAILED", "request_id": JOB,
                               "error": f"the key {KEY} may not use this model"}))
    with pytest.raises(GenerationFailed) as info:
        await run(make_client(failed), lambda c: c.wait(generation()))
    assert "the key *** may not use this model" in str(info.value)
    no_secret(info.value)
