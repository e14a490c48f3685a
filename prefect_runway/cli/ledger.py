"""``prefect-runway ledger``: what was paid for, what is in doubt, and settling a doubt."""

from __future__ import annotations

import argparse
import asyncio
import shlex
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from prefect_runway.cli.common import (
    DEFAULT_BLOCK_NAME,
    Parser,
    quiet_prefect_env,
    server_settings,
)
from prefect_runway.errors import LedgerRecordUnreadable, UsageError
from prefect_runway.tasks.ledger_records import LedgerRecord, scope_id

__all__ = ["add_parser", "format_ledger", "ledger_ls", "ledger_resolve"]


def _ledger(args: argparse.Namespace) -> Any:
    """The ledger of ``--storage``; a local storage that does not exist is a mistake (a
    typo would otherwise read as an empty ledger)."""
    from prefect_runway.storage import LocalStorage, resolve_storage
    from prefect_runway.tasks.ledger import ledger_of

    storage = resolve_storage(args.storage)
    if isinstance(storage, LocalStorage) and not storage.root.is_dir():
        raise UsageError(
            f"--storage: {args.storage!r} is not a directory ({storage.root} does not exist); "
            "allowed: the directory or s3://bucket/prefix the runs wrote to"
        )
    return ledger_of(storage)


def ledger_ls(args: argparse.Namespace) -> int:
    """``prefect-runway ledger ls``: the submissions recorded with a storage (or its doubts)."""
    from prefect_runway.errors import LedgerError, StorageError

    ledger = _ledger(args)
    try:
        records = asyncio.run(ledger.list(doubts_only=args.doubts))
    except (LedgerError, StorageError) as exc:
        raise UsageError(f"--storage: {exc}") from None
    if args.doubts and not records:
        print("No submissions in doubt.")
        return 0
    print(format_ledger(records))
    if any(getattr(r, "state", "intent") == "intent" for r in records):  # doubts, unreadable
        storage = shlex.quote(ledger.backend.storage)
        print(f"\nSettle a doubt once the provider's dashboard was checked: adopt the job it "
              f"shows with `prefect-runway ledger resolve FINGERPRINT --job JOB_ID --storage "
              f"{storage}` (the next run continues with it and pays nothing), or clear it with "
              f"`prefect-runway ledger resolve FINGERPRINT --storage {storage}` (the next run "
              "submits again).")
    return 0


def ledger_resolve(args: argparse.Namespace) -> int:
    """``prefect-runway ledger resolve FINGERPRINT [--job JOB_ID]``: settle a doubt once the
    provider's dashboard was checked: adopt the job it shows (the next run continues with
    it), or clear it (the next run submits again)."""
    from prefect_runway.errors import LedgerAmbiguous, LedgerError, StorageError

    if args.credentials and not args.job:
        raise UsageError("--credentials: only read with --job (to check the job); allowed: "
                         "--job JOB_ID --credentials block-type/name, or neither")
    ledger = _ledger(args)
    try:
        if args.job is not None:
            return _adopt(args, ledger)
        cleared = asyncio.run(ledger.resolve(args.fingerprint))
    except LedgerAmbiguous as exc:
        raise UsageError(f"fingerprint: {exc}; allowed: {', '.join(m[:16] for m in exc.matches)}") from None
    except (LedgerError, StorageError) as exc:
        raise UsageError(f"fingerprint: {exc}") from None
    for record in cleared:
        print(f"Resolved {record.fingerprint[:16]} ({record.provider} {record.model}, sent "
              f"{record.created_at:%Y-%m-%d %H:%M:%SZ}): the next run submits it again")
    return 0


def _adopt(args: argparse.Namespace, ledger: Any) -> int:
    """``ledger resolve FP --job JOB_ID``: the job checked with one status read through the
    saved credentials block the record's provider needs, then recorded as the submission's."""
    from prefect_runway.blocks.requests import load_credentials

    if not args.job.strip():
        raise UsageError("--job: is empty; allowed: the job id the provider's dashboard shows")

    async def adopt() -> Any:
        records = [r for r in await ledger.doubts(args.fingerprint) if isinstance(r, LedgerRecord)]
        name = args.credentials or (
            f"{records[0].provider}-credentials/{DEFAULT_BLOCK_NAME}" if records else "")
        credentials = await load_credentials(name, "--credentials") if records else None
        return await ledger.adopt(args.fingerprint, args.job, credentials)

    quiet_prefect_env()  # the block is read through the Prefect API
    with server_settings():
        job, status = asyncio.run(adopt())
    print(f"Adopted {job.provider} job {job.job_id} for {job.fingerprint[:16]} ({job.model}, "
          f"sent {job.created_at:%Y-%m-%d %H:%M:%SZ}); {job.provider} says it is "
          f"{status.raw_status or status.state.value}. The next run continues with it and pays "
          "nothing.")
    return 0


def add_parser(sub: Any) -> None:
    """``prefect-runway ledger ls`` and ``prefect-runway ledger resolve``."""
    led = sub.add_parser("ledger", help="the submission ledger: what was paid for, what is in doubt")
    lsub = led.add_subparsers(dest="ledger_command", required=True, parser_class=Parser)
    storage_help = ("the storage the runs wrote to: a directory or s3://bucket/prefix "
                    "(default %(default)s, the flows' default)")
    ll = lsub.add_parser("ls", help="list recorded submissions (jobs, doubts, cleared)")
    ll.add_argument("--doubts", action="store_true", help="only submissions whose outcome is unknown")
    ll.add_argument("--storage", default="runway-outputs", help=storage_help)
    ll.set_defaults(func=ledger_ls)
    lr = lsub.add_parser("resolve", help="settle a doubt after checking the provider's "
                         "dashboard: adopt the job it shows (--job), or clear it")
    lr.add_argument("fingerprint", help="the fingerprint (or its first characters) from `ledger ls`")
    lr.add_argument("--job", help="the job the provider's dashboard shows for this submission: "
                    "it is checked with one status read, then the next run continues with it "
                    "and pays nothing; without --job the doubt is cleared and the next run "
                    "submits again (a new, billed job)")
    lr.add_argument("--credentials", help="with --job: the saved credentials block the "
                    "submission was sent with, 'block-type/name' (default: "
                    f"<provider>-credentials/{DEFAULT_BLOCK_NAME}, e.g. "
                    f"segmind-credentials/{DEFAULT_BLOCK_NAME})")
    lr.add_argument("--storage", default="runway-outputs", help=storage_help)
    lr.set_defaults(func=ledger_resolve)


def _fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def format_ledger(records: Iterable[LedgerRecord | LedgerRecordUnreadable | Mapping[str, Any]]) -> str:
    """A plain-text table of ledger records for ``prefect-runway ledger ls``.

    Columns: fingerprint (first 16; of a record that cannot be read, its scope's own part:
    :func:`scope_id`), state (``doubt`` for an intent without a job,
    ``unreadable`` for a record that cannot be read), provider, model, job id, time (UTC,
    of the intent), flow run.
    """
    header = ("FINGERPRINT", "STATE", "PROVIDER", "MODEL", "JOB ID", "TIME (UTC)", "FLOW RUN")
    rows: list[tuple[str, ...]] = []
    for item in records:
        if isinstance(item, Mapping):
            item = LedgerRecord.model_validate(item)
        if isinstance(item, LedgerRecordUnreadable):
            rows.append((scope_id(item.scope)[:16], "unreadable", "-", "-", "-", "-",
                         item.reason[:40]))
            continue
        state = "doubt" if item.state == "intent" else item.state
        rows.append((
            item.fingerprint[:16], state, item.provider, item.model, item.job_id or "-",
            _fmt_time(item.created_at), item.flow_run_id or "-",
        ))
    if not rows:
        return "No submissions recorded."
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip()
             for r in (header, *rows)]
    return "\n".join(lines)
