"""What a flow run leaves for a person to look at in the Prefect UI."""

from __future__ import annotations

from collections.abc import Sequence

from prefect.artifacts import acreate_image_artifact, acreate_markdown_artifact

from prefect_runway.models import StoredOutput
from prefect_runway.providers.base import redact_url


def _artifact_key(text: str) -> str:
    # Artifact keys: lowercase letters, digits and dashes only.
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


async def publish_still(still: StoredOutput, image_url: str | None, name: str | None = None) -> None:
    """The still as an image artifact (where there is a URL the UI can show)."""
    if image_url and image_url.startswith(("http://", "https://")):
        await acreate_image_artifact(
            image_url=image_url,
            key=_artifact_key(f"still-{name or still.fingerprint[:12]}"),
            description=f"{still.provider} {still.model} still, job {still.job_id}",
        )


async def publish_outputs(outputs: Sequence[StoredOutput], title: str) -> None:
    """A markdown artifact linking every stored output, with its provenance."""
    lines = [
        f"# {title}",
        "",
        "| kind | output | provider | model | job | seconds | bytes | sha256 | cost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in outputs:
        seconds = (
            f"{(o.completed_at - o.submitted_at).total_seconds():.1f}"
            if o.completed_at and o.submitted_at else ""
        )
        link = o.location if "://" in o.location else f"file://{o.location}"
        lines.append(
            f"| {o.kind} | [{o.key}]({link}) | {o.provider} | {o.model} | `{o.job_id}` | {seconds} "
            f"| {o.size} | `{o.sha256[:16]}` | {'' if o.cost is None else o.cost} |"
        )
    lines += ["", "Sources: " + ", ".join(redact_url(o.source_url) for o in outputs)]
    await acreate_markdown_artifact(markdown="\n".join(lines), description=title)
