"""Storage keys (render_key, safe_key) and LocalStorage: containment, atomic puts, sidecars."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from prefect_runway.errors import InvalidRequest
from prefect_runway.models import StoredOutput
from prefect_runway.storage import LocalStorage, render_key, safe_key, sidecar_key

TEMPLATE = "{flow_run}/{name}-{seed}.{ext}"
DATA = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def values(**kw):
    base = dict(flow_run="run-1", name="cat", seed=42, ext="png")
    base.update(kw)
    return base


def assert_inside(storage: LocalStorage, key: str) -> None:
    target = Path(storage.location(key)).resolve()
    assert target.is_relative_to(storage.root), target
    assert target != storage.root


# ---- render_key ------------------------------------------------------------------------------


def test_render_key_fills_the_template():
    assert render_key(TEMPLATE, **values()) == "run-1/cat-42.png"


def test_render_key_missing_value_is_none():
    assert render_key(TEMPLATE, **values(seed=None)) == "run-1/cat-none.png"


def test_render_key_accepts_a_format_spec():
    assert render_key("{fingerprint:.12}.{ext}", fingerprint="0123456789abcdef", ext="mp4") == "0123456789ab.mp4"


def test_render_key_bad_format_spec_is_invalid_request_or_safe():
    for template, kw in [
        ("{name}-{seed:06d}.{ext}", values(seed=None)),
        ("{name:d}.{ext}", values()),
        ("{name:>{seed}}.{ext}", values()),
    ]:
        try:
            key = render_key(template, **kw)
        except InvalidRequest:
            continue
        assert ".." not in key.split("/")


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "..", ".", "...", "a/../../b", "/etc/passwd", "C:\\Windows\\x", "a\\..\\b",
     "a\x00b", "\u2024\u2024/x", "my cat \N{CAT FACE}", " ", "", "~root", "$HOME", "a\nb",
     "\u202egnp.exe"],
    ids=["dotdot-path", "dotdot", "dot", "dots", "mixed", "abs", "win-abs", "backslash", "nul",
         "one-dot-leaders", "unicode-space", "space", "empty", "tilde", "dollar", "newline",
         "rtl-override"],
)
def test_hostile_values_are_made_safe(tmp_path, name):
    key = render_key(TEMPLATE, **values(name=name))
    parts = key.split("/")
    assert parts[0] == "run-1"
    assert len(parts) == 2, f"a value added a directory level: {key!r}"
    assert ".." not in parts and "" not in parts
    assert all(ch.isascii() and ch.isprintable() and ch not in " \\:\x00" for ch in key), key
    assert_inside(LocalStorage(tmp_path), key)


@pytest.mark.parametrize("flow_run", ["..", "../..", "/", "a/b", "\\\\server\\share"])
def test_hostile_directory_values_stay_one_level(tmp_path, flow_run):
    key = render_key(TEMPLATE, **values(flow_run=flow_run))
    assert key.count("/") == 1 and ".." not in key.split("/")
    assert_inside(LocalStorage(tmp_path), key)


@pytest.mark.parametrize(
    "template",
    ["/etc/x", "/{name}.{ext}", "C:\\x", "C:/x/{name}", "c:{name}", "..", "../{name}",
     "{flow_run}/../../{name}", "a/../../{name}", "a\\..\\{name}", "{name}\\x", "a\x00/{name}",
     "", "./", "//{name}"],
)
def test_hostile_templates_are_rejected(template):
    with pytest.raises(InvalidRequest) as info:
        render_key(template, **values())
    assert info.value.field == "key_template"


@pytest.mark.parametrize(
    "template",
    ["{name.__class__}", "{name.__class__.__mro__}", "{name[0]}", "{unknown}", "{0}", "{}",
     "{name!r}", "{name!s}", "{__import__}", "{flow_run.__dict__}"],
)
def test_placeholder_injection_is_rejected(template):
    with pytest.raises(InvalidRequest) as info:
        render_key(template, **values())
    assert info.value.field == "key_template"
    assert info.value.allowed is not None and "name" in info.value.allowed


def test_odd_unicode_and_spaces_in_literal_parts_are_made_safe(tmp_path):
    key = render_key("my outputs/\u00fcber \N{CAT FACE}/{name}.{ext}", **values())
    assert all(ch.isascii() and ch != " " for ch in key), key
    assert key.endswith("/cat.png")
    assert_inside(LocalStorage(tmp_path), key)


def test_safe_key_normalises_dots_and_slashes():
    assert safe_key("./a//b/./c.png") == "a/b/c.png"


@pytest.mark.parametrize("key", ["", ".", "/", "../x", "a/../../x", "/abs", "C:/x", "a\\b", "a\x00"])
def test_safe_key_rejects(key):
    with pytest.raises(InvalidRequest):
        safe_key(key)


# ---- LocalStorage containment ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "..", "a\\..\\..\\x"])
def test_local_storage_refuses_keys_that_leave_the_root(tmp_path, key):
    storage = LocalStorage(tmp_path / "root")
    with pytest.raises(InvalidRequest):
        storage.location(key)


def test_local_storage_refuses_a_symlink_out_of_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    storage = LocalStorage(root)
    with pytest.raises(InvalidRequest):
        storage.location("link/x.png")


async def test_local_storage_put_is_an_atomic_rename(tmp_path):
    storage = LocalStorage(tmp_path / "out")
    staging = storage.staging_dir()
    part = staging / ".part-abc"
    part.write_bytes(DATA)
    inode = part.stat().st_ino
    key = render_key(TEMPLATE, **values())
    location = await storage.put(part, key, "image/png")
    target = Path(location)
    assert target == storage.root / "run-1" / "cat-42.png"
    assert target.read_bytes() == DATA
    assert not part.exists()
    assert target.stat().st_ino == inode  # renamed, not copied
    leftovers = [p for p in storage.root.rglob("*") if p.is_file() and p != target]
    assert leftovers == []


async def test_local_storage_put_replaces_an_existing_file(tmp_path):
    storage = LocalStorage(tmp_path)
    (tmp_path / "a.png").write_bytes(b"old")
    part = tmp_path / ".part-1"
    part.write_bytes(DATA)
    await storage.put(part, "a.png", "image/png")
    assert (tmp_path / "a.png").read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


async def test_write_bytes_leaves_no_temp_file(tmp_path):
    storage = LocalStorage(tmp_path)
    await storage.write_bytes("d/x.json", b"{}")
    assert (tmp_path / "d" / "x.json").read_bytes() == b"{}"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["x.json"]


async def test_read_bytes_and_sha256_of_missing_key(tmp_path):
    storage = LocalStorage(tmp_path)
    assert await storage.read_bytes("nope.png") is None
    assert await storage.sha256("nope.png") is None


def test_repr_names_the_root(tmp_path):
    assert str(tmp_path) in repr(LocalStorage(tmp_path))


# ---- sidecars ------------------------------------------------------------------------------


def stored(key: str, data: bytes, location: str) -> StoredOutput:
    return StoredOutput(
        location=location, key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
        media_type="image/png", provider="segmind", model="gen4_image", kind="image",
        job_id="req-1", fingerprint="f" * 64, source_url="https://cdn.example/out.png",
        request={"promptText": "x"}, metrics={"inference_time": 3.5}, cost=0.1,
    )


async def put_file(storage: LocalStorage, key: str, data: bytes) -> str:
    part = storage.staging_dir() / ".part-test"
    part.write_bytes(data)
    return await storage.put(part, key, "image/png")


async def test_sidecar_round_trip_and_verified(tmp_path):
    storage = LocalStorage(tmp_path)
    key = "run-1/cat-42.png"
    location = await put_file(storage, key, DATA)
    record = stored(key, DATA, location)
    sidecar_location = await storage.write_sidecar(record)
    assert sidecar_location == str(tmp_path / sidecar_key(key))
    assert Path(sidecar_location).is_file()
    assert await storage.read_sidecar(key) == record
    assert await storage.verified(key) == record


async def test_verified_is_none_when_bytes_are_tampered(tmp_path):
    storage = LocalStorage(tmp_path)
    key = "cat.png"
    location = await put_file(storage, key, DATA)
    await storage.write_sidecar(stored(key, DATA, location))
    Path(location).write_bytes(DATA[:-1] + b"\x00")
    assert await storage.read_sidecar(key) is not None
    assert await storage.verified(key) is None


async def test_verified_is_none_when_file_is_missing(tmp_path):
    storage = LocalStorage(tmp_path)
    key = "cat.png"
    location = await put_file(storage, key, DATA)
    await storage.write_sidecar(stored(key, DATA, location))
    Path(location).unlink()
    assert await storage.verified(key) is None


async def test_verified_is_none_without_or_with_a_corrupt_sidecar(tmp_path):
    storage = LocalStorage(tmp_path)
    key = "cat.png"
    await put_file(storage, key, DATA)
    assert await storage.verified(key) is None
    (tmp_path / sidecar_key(key)).write_text("{not json")
    assert await storage.read_sidecar(key) is None
    assert await storage.verified(key) is None


def test_sidecar_key():
    assert sidecar_key("a/b.png") == "a/b.png.json"


def test_no_temp_files_left_in_root(tmp_path):
    # staging_dir is the root itself; make sure it exists and is empty on creation.
    storage = LocalStorage(tmp_path / "new")
    assert storage.staging_dir() == storage.root
    assert os.listdir(storage.root) == []


async def test_stored_files_and_sidecars_are_readable_by_others(tmp_path):
    from prefect_runway.storage import LocalStorage

    store = LocalStorage(tmp_path)
    await store.write_bytes("a/b.json", b"{}")
    assert (tmp_path / "a" / "b.json").stat().st_mode & 0o777 == 0o644


def test_one_slug_rule_for_names_in_keys_and_artifact_keys():
    from prefect_runway.flows.artifacts import artifact_key as _artifact_key
    from prefect_runway.storage.keys import slug

    assert render_key("{name}.{ext}", name="Café Noir", ext="png") == "Cafe-Noir.png"
    assert render_key("{name}.{ext}", name="harbour at dawn", ext="png") == "harbour-at-dawn.png"
    assert _artifact_key("still-Café Noir") == "still-cafe-noir"
    assert _artifact_key("still-light house/../../etc") == "still-light-house-------etc"  # as before
    # Letters with no ASCII form: 8 hex digits of the name, so two names stay two keys.
    tokyo, osaka = slug("東京"), slug("大阪")
    assert tokyo != osaka and tokyo.startswith("u") and len(tokyo) == 9
    assert slug("straße", max_length=10).endswith("-" + slug("straße")[-8:])
    assert len(slug("ß" * 500, max_length=20)) <= 20
    assert _artifact_key("still-" + "x" * 100) == "still-" + "x" * 54


@pytest.mark.parametrize("name", ["two\nlines", "esc\x1b[2J", "nul\x00", "\u202eevil",
                                  "lone \ud800", "x" * 201, 5])
def test_a_name_that_cannot_be_shown_safely_is_refused(name):
    from prefect_runway.models import check_name

    with pytest.raises(InvalidRequest) as info:
        check_name(name)
    assert info.value.field == "name"


def test_any_other_unicode_name_is_kept():
    from prefect_runway.models import check_name

    for name in ("café", "東京", "👨‍👩‍👧 family", "x" * 200, None):
        assert check_name(name) == name
