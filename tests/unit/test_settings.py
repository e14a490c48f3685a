"""The PREFECT_RUNWAY_* settings: one settings model, read from the environment and checked
once, its mistakes typed errors naming the variable; nothing else reads those variables."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import prefect_runway
from prefect_runway.errors import InvalidRequest
from prefect_runway.settings import (
    ARTIFACT_LINK_ENV,
    ENV_PREFIX,
    LOCK_DIR_ENV,
    LOCK_HOLD_ENV,
    LOCK_REDIS_URL_ENV,
    MAX_DOWNLOADS_ENV,
    MAX_TASK_RUNS_ENV,
    RunwaySettings,
    get_settings,
)

ENVS = (MAX_DOWNLOADS_ENV, MAX_TASK_RUNS_ENV, LOCK_DIR_ENV, LOCK_HOLD_ENV, LOCK_REDIS_URL_ENV,
        ARTIFACT_LINK_ENV)


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_every_setting_is_a_described_field_named_by_its_variable():
    assert {ENV_PREFIX + name.upper() for name in RunwaySettings.model_fields} == set(ENVS)
    assert all(field.description for field in RunwaySettings.model_fields.values())


def test_the_defaults(clean):
    settings = get_settings()
    assert (settings.max_downloads, settings.max_task_runs, settings.lock_dir,
            settings.lock_hold_seconds, settings.lock_redis_url,
            settings.artifact_link_seconds) == (32, 64, None, 900.0, None, 86400)


def test_read_once_and_again_when_a_variable_changed(clean, tmp_path):
    first = get_settings()
    assert get_settings() is first  # checked once, not at every use
    clean.setenv(MAX_DOWNLOADS_ENV, " 7 ")
    clean.setenv(LOCK_DIR_ENV, str(tmp_path))
    clean.setenv(LOCK_REDIS_URL_ENV, " redis://127.0.0.1:1/0 ")
    changed = get_settings()
    assert changed is not first
    assert (changed.max_downloads, changed.lock_dir, changed.lock_redis_url) == (
        7, tmp_path, "redis://127.0.0.1:1/0")
    clean.setenv(MAX_DOWNLOADS_ENV, "")  # empty: the default
    assert get_settings().max_downloads == 32


@pytest.mark.parametrize(("variable", "value", "allowed"), [
    (MAX_DOWNLOADS_ENV, "2.5", "1 to 10000"),
    (MAX_TASK_RUNS_ENV, "10001", "1 to 10000"),
    (LOCK_HOLD_ENV, "soon", "1 to 86400"),
    (LOCK_REDIS_URL_ENV, "http://not-redis", "redis://host:port/db"),
    (ARTIFACT_LINK_ENV, "a week", "60 to 604800"),
])
def test_a_bad_value_is_a_typed_error_naming_its_variable(clean, variable, value, allowed):
    clean.setenv(variable, value)
    with pytest.raises(InvalidRequest) as caught:
        get_settings()
    assert caught.value.field == variable
    assert allowed in str(caught.value)
    clean.delenv(variable)
    get_settings()  # fixed: read again


def _reads_a_setting_from_the_environment(node: ast.AST) -> bool:
    """``os.environ.get(X)``, ``os.getenv(X)`` or ``os.environ[X]`` where X is a
    ``PREFECT_RUNWAY_*`` string, a ``*_ENV`` name or an ``.env`` attribute."""
    if isinstance(node, ast.Call) and node.args:
        func = ast.unparse(node.func)
        key = node.args[0]
    elif isinstance(node, ast.Subscript):
        func, key = ast.unparse(node.value), node.slice
    else:
        return False
    if func not in ("os.environ.get", "os.getenv", "environ.get", "os.environ"):
        return False
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return key.value.startswith(ENV_PREFIX)
    if isinstance(key, ast.Attribute):
        return key.attr.lower().endswith("env")
    return isinstance(key, ast.Name) and key.id.endswith("_ENV")


def test_no_module_but_the_settings_reads_a_setting_from_the_environment():
    root = Path(prefect_runway.__file__).parent
    readers = sorted(
        str(path.relative_to(root)) for path in root.rglob("*.py")
        if path.name != "settings.py" or path.parent != root
        if any(_reads_a_setting_from_the_environment(n) for n in ast.walk(ast.parse(path.read_text())))
    )
    assert readers == []
    # The check sees a read of one (what each reader did before the settings model).
    assert _reads_a_setting_from_the_environment(ast.parse(
        'os.environ.get("PREFECT_RUNWAY_LOCK_DIR")').body[0].value)
    assert _reads_a_setting_from_the_environment(ast.parse("os.environ[LOCK_DIR_ENV]").body[0].value)
