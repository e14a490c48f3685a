"""The emulator's state: jobs, their media, per-provider accounting. No HTTP here."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import re
import secrets
import threading
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from fractions import Fraction
from typing import Any, Literal
from urllib.parse import parse_qs

from ..errors import UnknownPrice
from ..money.prices import PriceTable
from . import media as media_mod
from .clock import Clock, SystemClock
from .config import PROVIDERS, EmulatorConfig
from .inputs import ImageLoader, InputError, decode_data_uri, is_data_uri

#: What the emulator bills a second of a finishing step's source video (Runway publishes no
#: price for them; the package's own table leaves them unknown).
FINISH_PRICES: dict[str, dict[str, Any]] = {
    "magnific_video_upscaler_creative": {"amount": 10, "unit": "credits", "per": "second",
                                         "source": "the emulator's stand-in"},
    "enhance_frame_rate": {"amount": 4, "unit": "credits", "per": "second",
                           "source": "the emulator's stand-in"},
}


class Phase(str, Enum):
    """Provider-neutral job phases (each protocol maps them to its own vocabulary)."""

    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)


class JobNotFound(Exception):
    """No such job for this provider (never existed, expired, or deleted)."""


class InsufficientCredits(Exception):
    """The provider account's credit balance cannot pay for the job."""


class QuotaExceeded(Exception):
    """The key has used its rolling daily quota of generations for this model."""


class UploadError(Exception):
    """An upload is unknown, expired, incomplete, belongs to another key or is too big."""


#: How long a Runway ephemeral upload (`runway://` URI) stays valid, seconds.
UPLOAD_TTL = 86_400.0
#: Largest file an ephemeral upload takes (Runway: images up to 200 MB this way).
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
#: Rolling window of the daily quotas, seconds.
DAY = 86_400.0

#: Prompt markers that make a job fail (in every provider's shape). `[unsafe-output]` fails
#: the first submission of a prompt per (provider, key); `[unsafe-output:N]` the first N, so
#: a resubmission (e.g. with a new seed) passes. `[internal]` fails every submission;
#: `[internal:N]` the first N of a prompt per (provider, key), so a resubmission passes.
UNSAFE_INPUT_MARKER = "[unsafe-input]"
INTERNAL_MARKER = "[internal]"
_INTERNAL_FIRST = re.compile(r"\[internal:(\d+)\]")
_UNSAFE_OUTPUT = re.compile(r"\[unsafe-output(?::(\d+))?\]")

#: Failure codes that are refunded (the job's charge is returned). Runway does not refund
#: input-safety failures; `fail_marker` is one of those.
NOT_REFUNDED = frozenset({"fail_marker", "unsafe_input"})


def key_id(api_key: str) -> str:
    """A short, non-secret id of an API key (how stats and charges name accounts)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class MediaNotFound(Exception):
    """No such media (never made, not ready, or expired with its job)."""


class MediaForbidden(Exception):
    """A signed media URL whose signature is missing, wrong or expired."""


@dataclass(frozen=True)
class Failure:
    """Why a job failed: a machine code and a human message."""

    code: str
    message: str


@dataclass(frozen=True)
class JobSpec:
    """What to make, already validated and normalised by a protocol module."""

    kind: Literal["still", "video"]
    prompt: str
    seed: int
    width: int
    height: int
    duration: float = 0.0
    image: str | None = None
    last_image: str | None = None
    max_image_bytes: int | None = None
    aspect_range: tuple[float, float] | None = None
    signed_outputs: bool = False
    #: A finishing step's source video (then ``width``/``height`` and ``fps`` are the new ones).
    source: bytes | None = field(default=None, repr=False)
    fps: Fraction | None = None

    @property
    def content_type(self) -> str:
        return media_mod.PNG if self.kind == "still" else media_mod.MP4

    @property
    def ratio(self) -> str:
        return f"{self.width}:{self.height}"


@dataclass(eq=False)
class Job:
    """One accepted submission."""

    id: str
    provider: str
    model: str
    api_key: str
    body: dict[str, Any]
    spec: JobSpec
    fingerprint: str
    route: str | None
    created_at: float
    created_wall: float
    latency: float
    queued_for: float
    expires_at: float | None
    fail: Failure | None
    expire_outputs: bool
    generation: int
    cost: float = 0.0
    unit: str = "credits"
    refunded: bool = False
    media_ids: list[str] = field(default_factory=list)
    started_at: float | None = None
    cancelled_at: float | None = None
    media_done: bool = False
    media_done_at: float | None = None
    input_failure: Failure | None = None
    finished_event: threading.Event = field(default_factory=threading.Event)

    def done_at(self) -> float | None:
        """When the job ends (or ended), on the backend's monotonic clock; None while that
        is not known yet (not started, or its media still being made). Benchmarks compare
        it with when a client noticed."""
        if self.started_at is None or not self.media_done:
            return None
        end = self.started_at + self.latency
        return max(end, self.media_done_at) if self.media_done_at is not None else end

    def slot_end(self) -> float:
        end = (self.started_at if self.started_at is not None else math.inf) + self.latency
        return min(end, self.cancelled_at) if self.cancelled_at is not None else end


@dataclass(frozen=True)
class JobView:
    """A consistent snapshot of a job at one instant, for the protocol modules."""

    job: Job
    phase: Phase
    progress: float
    failure: Failure | None
    now: float

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def created_iso(self) -> str:
        moment = datetime.fromtimestamp(self.job.created_wall, tz=timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @property
    def inference_time(self) -> float:
        """Seconds the job spent processing (so far)."""
        job = self.job
        if job.started_at is None:
            return 0.0
        start = job.started_at + job.queued_for
        end = min(self.now, job.started_at + job.latency)
        return round(max(0.0, end - start), 3)


@dataclass
class Media:
    """A made file in the store."""

    id: str
    provider: str
    job_id: str
    content_type: str
    signed: bool
    expires_at: float | None
    data: bytes | None = None
    #: Served as this many bytes: ``data``, then zeros (an oversized output; 0: ``data``).
    served_size: int = 0

    @property
    def etag(self) -> str:
        assert self.data is not None
        return '"' + hashlib.sha256(self.data).hexdigest()[:32] + '"'


def request_fingerprint(model: str, body: dict[str, Any]) -> str:
    """sha256 of the model and the canonical JSON body (sorted keys, no spaces)."""
    canonical = json.dumps(
        {"model": model, "body": body}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _new_stats() -> dict[str, Any]:
    return {
        "submissions": Counter(),
        "billable": Counter(),
        "status_calls": 0,
        "result_calls": 0,
        "downloads": 0,
        "download_bytes": 0,
        "cancels": 0,
        "deletes": 0,
        "errors": Counter(),
        "faults": Counter(),
        "credits_used": 0.0,
        "charges": 0,
        "credit_refusals": 0,
        "quota_refusals": 0,
        "uploads": 0,
        "upload_bytes": 0,
    }


@dataclass
class Upload:
    """A Runway ephemeral upload: created by `POST /v1/uploads`, filled by the form POST."""

    id: str
    api_key: str
    filename: str
    token: str
    expires_at: float
    data: bytes | None = None


@dataclass
class _Lane:
    """The jobs of one (provider, key): FIFO of not-yet-started ones, and started ones."""

    waiting: deque[Job] = field(default_factory=deque)
    model: str | None = None
    active: list[Job] = field(default_factory=list)
    last_start: float = -math.inf


class Backend:
    """All state of one emulator instance."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Clock | None = None) -> None:
        self._config = config or EmulatorConfig()
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(32)
        self._executor: ThreadPoolExecutor | None = None
        self.cache = media_mod.MediaCache()
        self.loader = ImageLoader(
            self._read_own_media, timeout=self._config.fetch_timeout, read_upload=self._read_upload
        )
        self._generation = 0
        #: Providers whose accounts read as empty (the fault plan's `providers` switch).
        self.empty_providers: frozenset[str] = frozenset()
        self._init_state()

    def _init_state(self) -> None:
        self._jobs: dict[str, dict[str, Job]] = {p: {} for p in PROVIDERS}
        self._lanes: dict[tuple[str, str, str | None], _Lane] = {}
        self._spent: dict[tuple[str, str], float] = {}
        self._charges: list[Job] = []
        self._recent: dict[tuple[str, str, str], deque[float]] = {}
        self._unsafe_seen: Counter[tuple[str, str, str]] = Counter()
        self._uploads: dict[str, Upload] = {}
        self._pending_refunds: set[Job] = set()
        self._prices = self._price_table()
        self._media: dict[str, Media] = {}
        self._stats: dict[str, dict[str, Any]] = {p: _new_stats() for p in PROVIDERS}
        self._rng = random.Random(self._config.seed)

    # -- configuration -------------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        return self._config

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Apply `changes` (validated) and return the new configuration."""
        with self._lock:
            self._config = self._config.updated(**changes)
            self.loader.timeout = self._config.fetch_timeout
            self._prices = self._price_table()
            return self._config

    def _price_table(self) -> PriceTable:
        table = PriceTable.default().with_overrides({"runway": FINISH_PRICES})
        if self._config.price_overrides:
            table = table.with_overrides(self._config.price_overrides)
        return table

    def price_of(
        self, provider: str, model: str, spec: JobSpec, body: dict[str, Any] | None = None
    ) -> tuple[float, str]:
        """(amount, unit) one job costs, per `prefect_runway.money.prices` (0 when unpriced); the
        body where its fields change the price (veo3.1's `audio`)."""
        try:
            found = self._prices.price(
                provider, model, ratio=spec.ratio,
                duration=spec.duration if spec.kind == "video" else None, body=body,
            )
        except (UnknownPrice, ValueError):
            return 0.0, "credits"
        return found.amount, found.unit

    # -- accounts ------------------------------------------------------------------

    def initial_balance(self, provider: str) -> float:
        """Each key's starting balance on `provider` (`credits`, else `balances`)."""
        if self._config.credits is not None:
            return self._config.credits
        return self._config.balances.get(provider, 0.0)

    def balance(self, provider: str, api_key: str) -> float:
        """What the key's account has left (0 while the provider is switched `empty`)."""
        with self._lock:
            self._settle(provider)
            if provider in self.empty_providers:
                return 0.0
            return max(0.0, self.initial_balance(provider) - self._spent.get((provider, api_key), 0.0))

    def daily_generations(self, provider: str, api_key: str) -> dict[str, int]:
        """Generations per model the key created in the last 24 h."""
        with self._lock:
            now = self.clock.monotonic()
            result = {}
            for (p, key, model), times in self._recent.items():
                if p == provider and key == api_key:
                    while times and times[0] <= now - DAY:
                        times.popleft()
                    result[model] = len(times)
            return result

    def concurrency_limit(self, provider: str, model: str | None) -> int | None:
        """Jobs one key may run at once (per model where `model_concurrency` names it)."""
        if model is not None and model in self._config.model_concurrency:
            return self._config.model_concurrency[model]
        return getattr(self._config, f"{provider}_concurrency")

    def _settle(self, provider: str | None = None) -> None:
        """Refund the jobs that failed or were cancelled since last looked at (under the
        lock). Only jobs that may be refunded are tracked, so this stays cheap."""
        now = self.clock.monotonic()
        for job in list(self._pending_refunds):
            if provider is not None and job.provider != provider:
                continue
            if job.generation != self._generation:
                self._pending_refunds.discard(job)
                continue
            if job.refunded or self._view(job, now).phase.terminal:
                self._pending_refunds.discard(job)

    def _refund(self, job: Job, code: str | None) -> None:
        if job.refunded or job.cost == 0 or not self._refunded(code):
            return
        job.refunded = True
        spent_key = (job.provider, job.api_key)
        self._spent[spent_key] = self._spent.get(spent_key, 0.0) - job.cost
        self._stats[job.provider]["credits_used"] -= job.cost

    def _refunded(self, code: str | None) -> bool:
        """Whether a job that failed with ``code`` gets its charge back."""
        return code not in NOT_REFUNDED and code not in self._config.kept_charges

    def charged(self, job: Job) -> float:
        """What a job costs its key now (0 once refunded)."""
        return 0.0 if job.refunded else job.cost

    def charges(self) -> list[dict[str, Any]]:
        """Every accepted job's charge, in submission order (refunds applied)."""
        with self._lock:
            self._settle()
            now = self.clock.monotonic()
            result = []
            for job in self._charges:
                live = self._jobs[job.provider].get(job.id) is job
                result.append({
                    "provider": job.provider,
                    "model": job.model,
                    "job_id": job.id,
                    "fingerprint": job.fingerprint,
                    "key_id": key_id(job.api_key),
                    "amount": job.cost,
                    "unit": job.unit,
                    "charged": self.charged(job),
                    "refunded": job.refunded,
                    "phase": self._view(job, now).phase.value if live else "forgotten",
                    "created_at": datetime.fromtimestamp(job.created_wall, tz=timezone.utc)
                    .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                })
            return result

    # -- uploads -------------------------------------------------------------------

    def create_upload(self, api_key: str, filename: str) -> Upload:
        """Reserve an ephemeral upload (its bytes come with the form POST)."""
        with self._lock:
            upload = Upload(
                id=uuid.uuid4().hex,
                api_key=api_key,
                filename=filename,
                token=secrets.token_urlsafe(24),
                expires_at=self.clock.monotonic() + self._config.upload_ttl,
            )
            self._uploads[upload.id] = upload
            self._stats["runway"]["uploads"] += 1
            return upload

    def complete_upload(self, upload_id: str, token: str, data: bytes) -> Upload:
        """Store the bytes of a form POST.

        Raises:
            UploadError: unknown or expired upload, wrong token, too big.
        """
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None or self.clock.monotonic() >= upload.expires_at:
                raise UploadError("upload not found or expired")
            if not hmac.compare_digest(token.encode(), upload.token.encode()):
                raise UploadError("upload signature does not match")
            if len(data) > MAX_UPLOAD_BYTES:
                raise UploadError(f"file is over {MAX_UPLOAD_BYTES} bytes")
            upload.data = data
            self._stats["runway"]["upload_bytes"] += len(data)
            return upload

    def upload_bytes(self, uri: str, api_key: str | None = None) -> bytes:
        """The bytes behind a `runway://` URI.

        Raises:
            UploadError: unknown, expired, not uploaded yet, or another key's.
        """
        upload_id = uri.removeprefix("runway://").rsplit("/", 1)[-1]
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None or self.clock.monotonic() >= upload.expires_at:
                raise UploadError(f"{uri} is unknown or has expired")
            if api_key is not None and upload.api_key != api_key:
                raise UploadError(f"{uri} belongs to another organization")
            if upload.data is None:
                raise UploadError(f"{uri} has no file yet (the upload form was not posted)")
            return upload.data

    def key_allowed(self, key: str | None) -> bool:
        """Whether `key` is an accepted API key."""
        if not key:
            return False
        keys = self._config.api_keys
        return keys is None or key in keys

    # -- jobs --------------------------------------------------------------------------

    def submit(
        self,
        provider: str,
        model: str,
        api_key: str,
        body: dict[str, Any],
        spec: JobSpec,
        *,
        route: str | None = None,
    ) -> Job:
        """Accept a validated submission: charge it, schedule it, start making its media.

        Raises:
            InsufficientCredits: the key's account cannot pay for it (nothing is recorded).
            QuotaExceeded: the key's rolling daily quota for the model is used up.
        """
        with self._lock:
            config = self._config
            stats = self._stats[provider]
            cost, unit = self.price_of(provider, model, spec, body)
            now = self.clock.monotonic()
            recent = self._check_allowance(provider, model, api_key, cost, unit, now)
            if config.latency_range is not None:
                latency = self._rng.uniform(*config.latency_range)
            else:
                latency = config.latency
            prompt = spec.prompt or ""
            fail = self._failure_for(provider, api_key, prompt)
            expire = bool(config.expire_marker and config.expire_marker in prompt)
            oversize = bool(config.oversize_marker and config.oversize_marker in prompt)
            job = Job(
                id=str(uuid.uuid4()),
                provider=provider,
                model=model,
                api_key=api_key,
                body=body,
                spec=spec,
                fingerprint=request_fingerprint(model, body),
                route=route,
                created_at=now,
                created_wall=self.clock.time(),
                latency=latency,
                queued_for=latency * config.queued_fraction,
                expires_at=now + config.expiry if provider == "segmind" else None,
                fail=fail,
                expire_outputs=expire,
                generation=self._generation,
                cost=cost,
                unit=unit,
            )
            self._jobs[provider][job.id] = job
            self._charges.append(job)
            if fail is not None and self._refunded(fail.code):
                self._pending_refunds.add(job)
            self._spent[(provider, api_key)] = self._spent.get((provider, api_key), 0.0) + cost
            recent.append(now)
            self._lane(job).waiting.append(job)
            stats["submissions"][model] += 1
            stats["billable"][job.fingerprint] += 1
            stats["credits_used"] += cost
            stats["charges"] += 1
            if fail is None:
                self._start_media(job, config.oversize_bytes if oversize else 0)
            else:
                job.media_done = True
            self._admit(self._lane_key(job), now)
            return job

    def _check_allowance(
        self, provider: str, model: str, api_key: str, cost: float, unit: str, now: float
    ) -> deque[float]:
        """Refuse a submission over the key's daily quota or balance (the lock is held); the
        key's recent submissions of the model, to append the accepted one to."""
        stats = self._stats[provider]
        limit = self._config.daily_limits.get(model)
        recent = self._recent.setdefault((provider, api_key, model), deque())
        while recent and recent[0] <= now - DAY:
            recent.popleft()
        if limit is not None and len(recent) >= limit:
            stats["quota_refusals"] += 1
            raise QuotaExceeded(
                f"daily limit of {limit} generations of {model} reached"
            )
        left = self.balance(provider, api_key)
        if cost > left + 1e-9:
            stats["credit_refusals"] += 1
            raise InsufficientCredits(f"job costs {cost:g} {unit}, {left:g} remain")
        return recent

    def _failure_for(self, provider: str, api_key: str, prompt: str) -> Failure | None:
        """How a job with this prompt fails, by its markers, or None (the lock is held)."""
        config = self._config
        unsafe_output = _UNSAFE_OUTPUT.search(prompt)
        if config.fail_marker and config.fail_marker in prompt:
            return Failure("fail_marker", "The prompt was rejected by content moderation.")
        if UNSAFE_INPUT_MARKER in prompt:
            return Failure("unsafe_input", "The input text was rejected by content moderation.")
        if unsafe_output:
            seen_key = (provider, api_key, prompt)
            self._unsafe_seen[seen_key] += 1
            if self._unsafe_seen[seen_key] <= int(unsafe_output.group(1) or 1):
                return Failure("unsafe_output", "The output was rejected by content moderation.")
        elif INTERNAL_MARKER in prompt:
            return Failure("internal_marker", "The model produced a bad output.")
        elif internal_first := _INTERNAL_FIRST.search(prompt):
            seen_key = (f"{provider}#internal", api_key, prompt)
            self._unsafe_seen[seen_key] += 1
            if self._unsafe_seen[seen_key] <= int(internal_first.group(1)):
                return Failure("internal_marker", "The model produced a bad output.")
        return None

    def _start_media(self, job: Job, served_size: int) -> None:
        """Register the job's output and start making it on the media pool (the lock is held)."""
        media_id = uuid.uuid4().hex
        job.media_ids.append(media_id)
        self._media[media_id] = Media(
            id=media_id,
            provider=job.provider,
            job_id=job.id,
            content_type=job.spec.content_type,
            signed=job.spec.signed_outputs,
            expires_at=job.expires_at,
            served_size=served_size,
        )
        self._media_executor().submit(self._produce, job)

    def lookup(self, provider: str, job_id: str, *, count: str | None = None) -> JobView:
        """A snapshot of a job; `count` ("status" or "result") is added to the stats.

        Raises:
            JobNotFound: unknown, deleted or expired.
        """
        with self._lock:
            if count is not None:
                self._stats[provider][f"{count}_calls"] += 1
            job = self._jobs[provider].get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            now = self.clock.monotonic()
            if job.expires_at is not None and now >= job.expires_at:
                self._forget(job)
                raise JobNotFound(job_id)
            view = self._view(job, now)
            if provider == "segmind" and job.expire_outputs and view.phase.terminal:
                self._forget(job)
                raise JobNotFound(job_id)
            return view

    def cancel(self, provider: str, job_id: str) -> Literal["cancelled", "deleted"]:
        """Cancel a job that has not finished, or delete one that has.

        Raises:
            JobNotFound: unknown or already deleted.
        """
        with self._lock:
            view = self.lookup(provider, job_id)
            job = view.job
            if view.phase.terminal:
                self._forget(job)
                self._stats[provider]["deletes"] += 1
                return "deleted"
            now = self.clock.monotonic()
            job.cancelled_at = now
            self._pending_refunds.add(job)
            lane = self._lane(job)
            if job in lane.waiting:
                lane.waiting.remove(job)
            self._stats[provider]["cancels"] += 1
            job.finished_event.set()
            self._admit(self._lane_key(job), now)
            return "cancelled"

    def jobs(self, provider: str) -> list[JobView]:
        """Snapshots of all live jobs of a provider."""
        with self._lock:
            now = self.clock.monotonic()
            return [self._view(job, now) for job in list(self._jobs[provider].values())]

    def _lane_key(self, job: Job) -> tuple[str, str, str | None]:
        model = job.model if job.model in self._config.model_concurrency else None
        return (job.provider, job.api_key, model)

    def _lane(self, job: Job) -> _Lane:
        key = self._lane_key(job)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(model=key[2])
        return lane

    def _admit(self, lane_key: tuple[str, str, str | None], now: float) -> None:
        """Start, in FIFO order, the waiting jobs of a lane whose slot had freed by `now`.

        A start time is only ever committed once it is in the past, so later cancellations
        (which only shorten slots from `now` on) never invalidate it.
        """
        lane = self._lanes.get(lane_key)
        if lane is None:
            return
        limit = self.concurrency_limit(lane_key[0], lane_key[2])
        while lane.waiting:
            job = lane.waiting[0]
            candidate = max(job.created_at, lane.last_start)
            ends = sorted(end for end in (j.slot_end() for j in lane.active) if end > candidate)
            if limit is None or len(ends) < limit:
                start = candidate
            else:
                start = ends[len(ends) - limit]
            if start > now:
                break
            lane.waiting.popleft()
            job.started_at = start
            lane.last_start = start
            lane.active = [j for j in lane.active if j.slot_end() > start]
            lane.active.append(job)

    def _view(self, job: Job, now: float) -> JobView:
        self._admit(self._lane_key(job), now)
        failure = None
        progress = 0.0
        if job.cancelled_at is not None:
            phase = Phase.CANCELLED
        elif job.started_at is None:
            phase = Phase.WAITING
        else:
            elapsed = now - job.started_at
            if elapsed < job.queued_for:
                phase = Phase.QUEUED
            elif elapsed < job.latency:
                phase = Phase.RUNNING
                span = max(job.latency - job.queued_for, 1e-9)
                progress = min(0.99, max(0.0, (elapsed - job.queued_for) / span))
            elif job.fail is not None:
                phase, failure = Phase.FAILED, job.fail
            elif not job.media_done:
                phase, progress = Phase.RUNNING, 0.99
            elif job.input_failure is not None:
                phase, failure = Phase.FAILED, job.input_failure
            else:
                phase, progress = Phase.SUCCEEDED, 1.0
        if phase.terminal:
            job.finished_event.set()
            if phase is not Phase.SUCCEEDED:
                self._refund(job, failure.code if failure else None)
        return JobView(job=job, phase=phase, progress=round(progress, 3), failure=failure, now=now)

    def _forget(self, job: Job) -> None:
        self._jobs[job.provider].pop(job.id, None)
        lane = self._lanes.get(self._lane_key(job))
        if lane is not None and job in lane.waiting:
            lane.waiting.remove(job)
        for media_id in job.media_ids:
            self._media.pop(media_id, None)

    # -- media -------------------------------------------------------------------------

    def _produce(self, job: Job) -> None:
        """Make a job's media (on a worker thread)."""
        spec = job.spec
        config = self._config
        data: bytes | None = None
        failure: Failure | None = None
        key: tuple[Any, ...]
        try:
            if config.stock_media and spec.source is None:
                data = self._stock(spec, config.video_fps)
            elif spec.source is not None:  # a finishing step: the source, upscaled or retimed
                source, rate = spec.source, spec.fps or Fraction(config.video_fps)
                key = ("finish", hashlib.sha256(source).hexdigest(), spec.width, spec.height, rate)
                make = lambda: media_mod.finish_video(  # noqa: E731
                    source, spec.width, spec.height, rate)
            elif spec.kind == "still":
                key = ("still", spec.prompt, spec.seed, spec.width, spec.height)
                make = lambda: media_mod.make_still(  # noqa: E731
                    spec.prompt, spec.seed, spec.width, spec.height
                )
            else:
                assert spec.image is not None
                first = self.loader.load(spec.image, max_bytes=spec.max_image_bytes)
                last = None
                if spec.last_image:
                    last = self.loader.load(spec.last_image, max_bytes=spec.max_image_bytes)
                if spec.aspect_range is not None:
                    low, high = spec.aspect_range
                    for loaded in (first, last):
                        if loaded is not None and not low <= loaded.aspect <= high:
                            raise InputError(
                                f"image width/height ratio {loaded.aspect:.3f} is outside "
                                f"{low:g}..{high:g}"
                            )
                fps = config.video_fps
                key = (
                    "video",
                    media_mod.image_digest(first.image),
                    media_mod.image_digest(last.image) if last else None,
                    spec.width,
                    spec.height,
                    spec.duration,
                    fps,
                )
                make = lambda: media_mod.make_video(  # noqa: E731
                    first.image,
                    spec.width,
                    spec.height,
                    spec.duration,
                    fps,
                    last.image if last else None,
                )
            if not config.stock_media:
                data = self.cache.get_or_make(key, make) if config.media_cache else make()
        except InputError as exc:
            failure = Failure("input", str(exc))
        except Exception as exc:  # noqa: BLE001 - a job must never hang on a bug
            failure = Failure("internal", f"emulator could not make media: {exc!r}")
        with self._lock:
            if job.generation != self._generation:
                return
            if failure is not None:
                job.input_failure = failure
                self._pending_refunds.add(job)
            elif data is not None:
                for media_id in job.media_ids:
                    entry = self._media.get(media_id)
                    if entry is not None:
                        entry.data = data
            job.media_done = True
            job.media_done_at = self.clock.monotonic()

    def _stock(self, spec: JobSpec, fps: int) -> bytes:
        """The stock media for a job's kind and size (made once, then from the cache)."""
        if spec.kind == "still":
            return self.cache.get_or_make(
                ("stock-still", spec.width, spec.height),
                lambda: media_mod.make_still("stock media", 0, spec.width, spec.height),
            )
        return self.cache.get_or_make(
            ("stock-video", spec.width, spec.height, spec.duration, fps),
            lambda: media_mod.make_video(
                media_mod.render_still("stock media", 0, spec.width, spec.height),
                spec.width, spec.height, spec.duration, fps,
            ),
        )

    def _media_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._config.media_workers, thread_name_prefix="emulator-media"
            )
        return self._executor

    def read_input(self, reference: str, max_bytes: int) -> bytes:
        """The bytes of an input (a data URI, a ``runway://`` upload, a loopback URL), at
        most ``max_bytes`` (a source video of the finishing step, read when it is submitted).

        Raises:
            InputError: it cannot be read, or is larger.
        """
        if is_data_uri(reference):
            data = decode_data_uri(reference)[1]
        elif reference.startswith("runway://"):
            data = self._read_upload(reference)
        else:
            data = self.loader.fetch(reference)
        if len(data) > max_bytes:
            raise InputError(f"input is {len(data)} bytes, more than {max_bytes}")
        return data

    def _read_upload(self, uri: str) -> bytes:
        """For the image loader: the bytes of a `runway://` upload."""
        try:
            return self.upload_bytes(uri)
        except UploadError as exc:
            raise InputError(str(exc)) from exc

    def _read_own_media(self, media_id: str, query: str) -> bytes | None:
        """For the image loader: our own media by id (None if we do not hold it)."""
        with self._lock:
            entry = self._media.get(media_id)
            if entry is None:
                return None
        try:
            return self.media_for_download(media_id, query).data
        except MediaForbidden as exc:
            raise InputError(f"input image URL is forbidden (HTTP 403): {exc}") from exc
        except MediaNotFound as exc:
            raise InputError("input image URL answers HTTP 404") from exc

    def media_url(self, base_url: str, media_id: str, *, signed: bool, expired: bool = False) -> str:
        """The absolute download URL of a media file; signed ones carry `exp` and `sig`."""
        url = f"{base_url.rstrip('/')}/_emulator/media/{media_id}"
        if not signed:
            return url
        now_ms = int(self.clock.time() * 1000)
        exp = now_ms - 1000 if expired else now_ms + int(self._config.output_url_ttl * 1000)
        nonce = secrets.token_hex(4)
        return f"{url}?exp={exp}&n={nonce}&sig={self._sign(media_id, exp, nonce)}"

    def _sign(self, media_id: str, exp: int, nonce: str) -> str:
        message = f"{media_id}.{exp}.{nonce}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:40]

    def media_for_download(self, media_id: str, query: str) -> Media:
        """A ready media file whose URL (query string) is valid now.

        Raises:
            MediaNotFound: unknown, not made yet, or expired with its job.
            MediaForbidden: signed and the signature is missing, wrong or expired.
        """
        with self._lock:
            entry = self._media.get(media_id)
            now = self.clock.monotonic()
            if entry is None or entry.data is None:
                raise MediaNotFound(media_id)
            if entry.expires_at is not None and now >= entry.expires_at:
                job = self._jobs[entry.provider].get(entry.job_id)
                if job is not None:
                    self._forget(job)
                self._media.pop(media_id, None)
                raise MediaNotFound(media_id)
            job = self._jobs[entry.provider].get(entry.job_id)
            if (
                not entry.signed
                and job is not None
                and job.expire_outputs
                and self._view(job, now).phase.terminal
            ):
                self._forget(job)
                raise MediaNotFound(media_id)
            if entry.signed:
                params = parse_qs(query)
                try:
                    exp = int(params["exp"][0])
                    nonce = params["n"][0]
                    sig = params["sig"][0]
                except (KeyError, IndexError, ValueError) as exc:
                    raise MediaForbidden("missing or malformed signature") from exc
                expected = self._sign(media_id, exp, nonce)
                if not hmac.compare_digest(sig.encode(), expected.encode()):
                    raise MediaForbidden("signature does not match")
                if self.clock.time() * 1000 >= exp:
                    raise MediaForbidden("URL has expired")
            return entry

    def provider_of_media(self, media_id: str) -> str | None:
        with self._lock:
            entry = self._media.get(media_id)
            return entry.provider if entry else None

    # -- accounting --------------------------------------------------------------------

    def record(self, provider: str, counter: str, amount: int = 1) -> None:
        """Add to a plain counter (`downloads`, `download_bytes`, ...)."""
        with self._lock:
            self._stats[provider][counter] += amount

    def record_error(self, provider: str, status: int) -> None:
        with self._lock:
            self._stats[provider]["errors"][str(status)] += 1

    def record_fault(self, provider: str, kind: str) -> None:
        with self._lock:
            self._stats[provider]["faults"][kind] += 1

    def remaining_credits(self, provider: str, api_key: str | None = None) -> float | None:
        """A key's balance; without a key, the only account's (None if several were used)."""
        with self._lock:
            if api_key is not None:
                return self.balance(provider, api_key)
            keys = [key for (p, key) in self._spent if p == provider]
            if len(keys) > 1:
                return None
            if keys:
                return self.balance(provider, keys[0])
            return 0.0 if provider in self.empty_providers else self.initial_balance(provider)

    def stats(self) -> dict[str, Any]:
        """Per-provider counters as plain JSON values."""
        with self._lock:
            self._settle()
            result: dict[str, Any] = {}
            for provider, stats in self._stats.items():
                billable = dict(stats["billable"])
                result[provider] = {
                    "submissions": dict(stats["submissions"]),
                    "total_submissions": sum(stats["submissions"].values()),
                    "billable": billable,
                    "duplicate_submissions": sum(n - 1 for n in billable.values()),
                    "status_calls": stats["status_calls"],
                    "result_calls": stats["result_calls"],
                    "downloads": stats["downloads"],
                    "download_bytes": stats["download_bytes"],
                    "cancels": stats["cancels"],
                    "deletes": stats["deletes"],
                    "errors": dict(stats["errors"]),
                    "faults": dict(stats["faults"]),
                    "credits_used": stats["credits_used"],
                    "credits_remaining": self.remaining_credits(provider),
                    "charges": stats["charges"],
                    "credit_refusals": stats["credit_refusals"],
                    "quota_refusals": stats["quota_refusals"],
                    "uploads": stats["uploads"],
                    "upload_bytes": stats["upload_bytes"],
                    "accounts": {
                        key_id(key): {
                            "spent": round(spent, 6),
                            "balance": self.balance(provider, key),
                        }
                        for (p, key), spent in self._spent.items() if p == provider
                    },
                    "empty": provider in self.empty_providers,
                    "live_jobs": len(self._jobs[provider]),
                }
            result["media_cache"] = {"hits": self.cache.hits, "misses": self.cache.misses}
            return result

    def reset(self) -> None:
        """Forget all jobs, media and counters (the configuration stays)."""
        with self._lock:
            self._generation += 1
            self._init_state()
            self.cache.clear()

    def close(self) -> None:
        """Stop the media workers (new ones start if jobs are submitted again)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
