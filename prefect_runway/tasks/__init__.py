"""Prefect tasks: submit / wait / download, each a small, retried step."""

from prefect_runway.tasks.generation import (
    collect_generation,
    download_generation,
    submit_generation,
    submit_task_for,
    wait_for_generation,
)

__all__ = [
    "collect_generation", "download_generation", "submit_generation", "submit_task_for",
    "wait_for_generation",
]
