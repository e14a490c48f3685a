"""Prefect tasks: the paid submit (cached, written ahead in the ledger, locked), and the wait
and download of a job."""

from prefect_runway.tasks.collect import (
    collect_generation,
    download_generation,
    wait_for_generation,
)
from prefect_runway.tasks.generation import submit_generation, submit_task_for

__all__ = [
    "collect_generation", "download_generation", "submit_generation", "submit_task_for",
    "wait_for_generation",
]
