"""Reading a storyboard's shots: a list, or a JSON / CSV / YAML file, local or in S3."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from prefect_runway.errors import InvalidRequest, InvalidShot
from prefect_runway.models import Shot

#: File extensions and the format each one means.
FORMATS = {".json": "json", ".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}
SHOT_FIELDS: tuple[str, ...] = tuple(Shot.model_fields)
# A shots file is untrusted input, bounded before anything in it is used.
#: The largest shots file read, in bytes (locally or from S3).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: The most values (mappings, lists, scalars, keys) a shots file may hold, aliases expanded.
MAX_NODES = 500_000
#: How deep a shots file may nest (a shot's reference image is 5 deep).
MAX_DEPTH = 32
#: The most shots in one storyboard.
MAX_SHOTS = 10_000


async def load_shots(
    source: str | os.PathLike[str] | Sequence[Shot | Mapping[str, Any]],
    *,
    format: str | None = None,
    continuity: bool = False,
) -> list[Shot]:
    """The shots of a storyboard, each checked.

    Args:
        source: Shots (``Shot`` objects or mappings), or the path or ``s3://bucket/key`` of a
            JSON, CSV or YAML file.
        format: ``json``, ``csv`` or ``yaml``; default: from the file's extension.
        continuity: The storyboard's shots after the first start on the previous shot's
            last frame (a shot with no still is then text-to-video only if it is the first).

    Returns:
        The shots, in order.

    Raises:
        InvalidShot: a shot is invalid; names the file, the row and the field.
        InvalidRequest: the file cannot be found, read or parsed.

    Example:
        ```python
        from prefect import flow
        from prefect_runway.flows.shots import load_shots

        @flow
        async def count_shots(path: str) -> int:
            return len(await load_shots(path))
        ```
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        data = await read_source(name)
        return parse_shots(data, format or format_of(name), source=name, continuity=continuity)
    if isinstance(source, (Shot, Mapping)):
        raise InvalidRequest("shots", "is a single shot", allowed="a list of shots or a file")
    return shots_from_items(list(source), continuity=continuity)


def format_of(name: str) -> str:
    """The format a file name's extension means."""
    path = name.split("?", 1)[0]
    suffix = os.path.splitext(path)[1].lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise InvalidRequest(
            "shots", f"{name!r} has no known shots file extension", allowed=sorted(FORMATS)
        ) from None


async def read_source(name: str) -> bytes:
    """The bytes of a local file or an ``s3://bucket/key`` object, at most
    :data:`MAX_FILE_BYTES` of them.

    Raises:
        InvalidRequest: naming ``shots``: no such file, or a larger one (not read whole).
    """
    if name.startswith("s3://"):
        data = await _read_s3(name)
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise InvalidRequest(
                "shots", f"{name!r} is not a file (relative paths start at {os.getcwd()!r})",
                allowed="a JSON, CSV or YAML file, local or s3://bucket/key",
            )
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise InvalidRequest("shots", f"{name!r} is larger than {MAX_FILE_BYTES} bytes",
                             allowed=f"a shots file of at most {MAX_FILE_BYTES} bytes")
    return data


async def _read_s3(uri: str) -> bytes:
    bucket_and_prefix, _, key = uri.rpartition("/")
    if not key or bucket_and_prefix in ("s3:/", "s3:"):
        raise InvalidRequest("shots", f"{uri!r} does not name an object", allowed="s3://bucket/key")
    from prefect_runway.storage.s3 import S3Storage

    data = await S3Storage.from_uri(bucket_and_prefix).read_bytes(key, max_bytes=MAX_FILE_BYTES)
    if data is None:
        raise InvalidRequest("shots", f"{uri!r} does not exist")
    return data


def parse_shots(data: bytes | str, format: str, *, source: str | None = None,
                continuity: bool = False) -> list[Shot]:
    """Shots from the text of a JSON, CSV or YAML shots file (``continuity``: as
    :func:`load_shots`).

    Raises:
        InvalidShot: a shot is invalid.
        InvalidRequest: the text cannot be parsed, or passes a bound (:data:`MAX_NODES`,
            :data:`MAX_DEPTH`, :data:`MAX_SHOTS`).
    """
    where = source or "shots"
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        raise InvalidRequest("shots", f"{where} is not UTF-8 text (byte {e.start})",
                             allowed="a JSON, CSV or YAML file in UTF-8") from None
    if format == "csv":
        return _csv_shots(text, source, continuity)
    if format == "json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidRequest(
                "shots", f"{where} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
            ) from None
        except RecursionError:
            raise _too_deep(where) from None
        except ValueError as e:  # e.g. an integer of more digits than Python converts
            raise InvalidRequest("shots", f"{where} is not valid JSON ({e})") from None
        _check_size(document, where)
    elif format == "yaml":
        try:
            document = yaml.load(text, Loader=_loader(where))  # noqa: S506 - a SafeLoader
        except InvalidRequest:
            raise
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise InvalidRequest("shots", f"{where} is not valid YAML{at}") from None
        except (ValueError, OverflowError) as e:  # a value YAML cannot build (a 30 February)
            raise InvalidRequest("shots", f"{where} is not valid YAML ({e})") from None
    else:
        raise InvalidRequest("shots", f"format {format!r} is not known", allowed=("json", "csv", "yaml"))
    defaults: Mapping[str, Any] = {}
    if isinstance(document, Mapping):
        unknown = set(document) - {"defaults", "shots"}
        if unknown:
            raise InvalidRequest(
                "shots", f"{where} has unknown top-level keys {sorted(unknown)}",
                allowed="a list of shots, or {defaults: {...}, shots: [...]}",
            )
        defaults = document.get("defaults") or {}
        if not isinstance(defaults, Mapping):
            raise InvalidRequest("shots", f"{where}: 'defaults' is not a mapping")
        for key in defaults:
            if key not in SHOT_FIELDS:
                raise InvalidRequest(str(key), f"is not a shot field (in {where}'s defaults)",
                                     allowed=SHOT_FIELDS)
        document = document.get("shots")
    if not isinstance(document, list):
        raise InvalidRequest(
            "shots", f"{where} holds no list of shots",
            allowed="a list of shots, or {defaults: {...}, shots: [...]}",
        )
    return shots_from_items(document, defaults=defaults, source=source, continuity=continuity)


def shots_from_items(
    items: Sequence[Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    source: str | None = None,
    lines: Sequence[int | None] | None = None,
    continuity: bool = False,
) -> list[Shot]:
    """Check each item (a Shot or a mapping of shot fields) and return the shots; a shot
    with no still is checked as text-to-video unless ``continuity`` starts it on the
    previous shot's last frame (every shot after the first).

    Raises:
        InvalidShot: naming the row (1-based) and the field.
    """
    if not items:
        raise InvalidRequest("shots", f"{source or 'the list'} has no shots")
    if len(items) > MAX_SHOTS:
        raise InvalidRequest("shots", f"{source or 'the list'} has {len(items)} shots",
                             allowed=f"at most {MAX_SHOTS} per storyboard")
    shots: list[Shot] = []
    for row, item in enumerate(items, start=1):
        line = lines[row - 1] if lines else None
        text_only = not (continuity and row > 1)  # a shot with no still: text-to-video
        if isinstance(item, Shot):
            try:
                if text_only and item.still_prompt is None:
                    item.text_request()
            except InvalidRequest as e:
                raise _invalid(row, e, source, item.name, line) from None
            shots.append(item)
            continue
        if not isinstance(item, Mapping):
            raise InvalidShot(row, "shot", f"is a {type(item).__name__}, not a mapping of shot fields",
                              source=source, line=line)
        fields = {**(defaults or {}), **item}
        name = fields.get("name")
        shot_name = str(name) if name not in (None, "") else None
        _check_fields(item, row=row, source=source, line=line, shot=shot_name)
        try:
            shot = Shot(**fields)
            if text_only and shot.still_prompt is None:
                shot.text_request()
        except InvalidRequest as e:
            raise _invalid(row, e, source, shot_name, line) from None
        shots.append(shot)
    return shots


def _invalid(row: int, e: InvalidRequest, source: str | None, shot: str | None,
             line: int | None) -> InvalidShot:
    return InvalidShot(row, e.field, message_of(e), source=source, shot=shot, line=line,
                       allowed=e.allowed, provider=e.provider, model=e.model)


def message_of(error: InvalidRequest) -> str:
    """An InvalidRequest's own message, without its field prefix and allowed values."""
    text = str(error)
    prefix = f"{error.field}: "
    if text.startswith(prefix):
        text = text[len(prefix):]
    if error.allowed is not None:
        text = text.rsplit("; allowed: ", 1)[0]
    where = " ".join(p for p in (error.provider, error.model) if p)
    if where and text.endswith(f" (for {where})"):
        text = text[: -len(f" (for {where})")]
    return text


def _check_fields(
    item: Mapping[str, Any], *, row: int, source: str | None, line: int | None = None,
    shot: str | None = None,
) -> None:
    for key in item:
        if key not in SHOT_FIELDS:
            raise InvalidShot(
                row, str(key), "is not a shot field", source=source, line=line, shot=shot,
                allowed=SHOT_FIELDS,
            )


def _csv_shots(text: str, source: str | None, continuity: bool = False) -> list[Shot]:
    try:
        return _csv_rows(text, source, continuity)
    except csv.Error as e:  # a cell past csv's field size limit, a stray quote
        raise InvalidRequest("shots", f"{source or 'the CSV'} is not valid CSV ({e})") from None


def _csv_rows(text: str, source: str | None, continuity: bool) -> list[Shot]:
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)
    if not reader.fieldnames:
        raise InvalidRequest("shots", f"{source or 'the CSV'} has no header row")
    header = [h.strip() for h in reader.fieldnames]
    reader.fieldnames = header
    for column in header:
        if column not in SHOT_FIELDS:
            raise InvalidRequest(column, f"is not a shot field (in the header row of {source or 'the CSV'})",
                                 allowed=SHOT_FIELDS)
    items: list[dict[str, Any]] = []
    lines: list[int | None] = []
    start = 2
    for row, record in enumerate(reader, start=1):
        name = (record.get("name") or "").strip() or None
        if None in record:
            raise InvalidShot(row, "row", "has more cells than the header has columns",
                              source=source, line=start, shot=name)
        item: dict[str, Any] = {}
        for column, cell in record.items():
            value = (cell or "").strip()
            if not value:
                continue
            if column == "reference_images":
                try:
                    item[column] = _reference_cell(value)
                except ValueError as e:
                    raise InvalidShot(row, column, str(e), source=source, line=start,
                                      shot=name) from None
            else:
                item[column] = value
        items.append(item)
        lines.append(start)
        start = reader.line_num + 1
    return shots_from_items(items, source=source, lines=lines, continuity=continuity)


def _reference_cell(value: str) -> list[dict[str, str]]:
    """``tag=uri | tag2=uri2`` or a JSON list of ``{uri, tag}``."""
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"is not a valid JSON list ({e.msg})") from None
        except (RecursionError, ValueError):  # nested past Python's limit; too many digits
            raise ValueError("is not a valid JSON list of reference images") from None
        if not isinstance(parsed, list):
            raise ValueError("is not a JSON list")
        return parsed
    refs = []
    for entry in value.split("|"):
        entry = entry.strip()
        if not entry:
            continue
        tag, eq, uri = entry.partition("=")
        if not eq or not tag.strip() or not uri.strip():
            raise ValueError(f"{entry!r} is not tag=uri")
        refs.append({"tag": tag.strip(), "uri": uri.strip()})
    return refs


def _too_deep(where: str) -> InvalidRequest:
    return InvalidRequest("shots", f"{where} nests deeper than {MAX_DEPTH} levels",
                          allowed=f"at most {MAX_DEPTH} levels of lists and mappings")


def _too_many(where: str) -> InvalidRequest:
    return InvalidRequest("shots", f"{where} holds more than {MAX_NODES} values",
                          allowed=f"at most {MAX_NODES} values (YAML aliases count as what "
                                  "they stand for)")


def _check_size(document: Any, where: str) -> None:
    """Refuse a parsed JSON document with more than :data:`MAX_NODES` values or deeper than
    :data:`MAX_DEPTH` (walked without recursion)."""
    count = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise _too_many(where)
        if depth > MAX_DEPTH:
            raise _too_deep(where)
        if isinstance(value, dict):
            count += len(value)  # the keys
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value)


def _node_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class _ShotsLoader(yaml.SafeLoader):
    """YAML's safe loader without base-60 integers, so ``ratio: 16:9`` stays "16:9", and
    bounded: at most :data:`MAX_NODES` nodes composed and :data:`MAX_DEPTH` levels, and a
    document whose aliases expand past either (a "billion laughs") or into themselves is
    refused before anything is built from it."""

    where = "shots"

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._composed = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._composed += 1
        self._depth += 1
        try:
            if self._composed > MAX_NODES:
                raise _too_many(self.where)
            if self._depth > MAX_DEPTH:
                raise _too_deep(self.where)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: Any) -> Any:
        self._check_expanded(node)
        return super().construct_document(node)

    def _check_expanded(self, root: yaml.Node) -> None:
        """Each node's size and depth with its aliases expanded (each node counted once, so
        this is linear in the composed document), refusing cycles."""
        sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth), expanded
        open_nodes: set[int] = set()  # the path from the root to the node being expanded
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        while stack:
            node, finished = stack.pop()
            key = id(node)
            children = _node_children(node)
            if finished:
                open_nodes.discard(key)
                values = 1 + sum(sizes[id(c)][0] for c in children)
                depth = 1 + max((sizes[id(c)][1] for c in children), default=0)
                if values > MAX_NODES:
                    raise _too_many(self.where)
                if depth > MAX_DEPTH:
                    raise _too_deep(self.where)
                sizes[key] = (values, depth)
                continue
            if key in sizes:
                continue
            open_nodes.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in open_nodes:
                    raise InvalidRequest("shots", f"{self.where} has an alias that refers to "
                                         "itself", allowed="aliases of earlier values only")
                if id(child) not in sizes:
                    stack.append((child, False))


def _loader(where: str) -> type[_ShotsLoader]:
    """The bounded loader, naming ``where`` in its errors."""
    return type("ShotsLoader", (_ShotsLoader,), {"where": where})


_INT = "tag:yaml.org,2002:int"
_ShotsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _INT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ShotsLoader.add_implicit_resolver(
    _INT,
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+
            |[-+]?0[0-7_]+
            |[-+]?(?:0|[1-9][0-9_]*)
            |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
