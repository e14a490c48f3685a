"""The documents a user reads: no machine path or issue number in them, the README's links
resolve, and deployments/prefect.yaml names a Prefect version the package accepts.

The pages' own links and anchors are checked by ``mkdocs build --strict`` (see ``.ci/run``)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted(
    [README, REPO / "benchmarks" / "README.md", REPO / "CHANGELOG.md",
     *(REPO / "docs").rglob("*.md")]
)

#: A path on the machine the docs were written on: it means nothing on the reader's.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|root)/")
#: "issue 12", "issues 11 and 13", "#12" (not an anchor such as "#3-global-limits", nor "&#12").
ISSUE = re.compile(r"\bissues?\s+#?\d+|(?<![\w&/])#\d+(?![\w-])", re.IGNORECASE)
#: A dotted name in the package: ``prefect_runway.money.prices.PriceTable``.
DOTTED = re.compile(r"\bprefect_runway(?:\.[A-Za-z_]\w*)+")
#: ``from prefect_runway.x import a, b`` in an example.
FROM_IMPORT = re.compile(r"\bfrom (prefect_runway[\w.]*) import \(?([\w, ]+)")
#: A file of the repository named by its path: ``prefect_runway/money/prices.py``.
REPO_FILE = re.compile(r"(?<![\w/.])((?:prefect_runway|tests|benchmarks)/[\w/]+\.py)\b")
#: A markdown link or image: [text](target) / ![alt](target "title").
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _lines(path: Path) -> list[tuple[int, str]]:
    return list(enumerate(path.read_text(encoding="utf-8").splitlines(), 1))


def test_the_docs_exist():
    names = {p.relative_to(REPO).as_posix() for p in DOCS}
    assert {"README.md", "benchmarks/README.md", "docs/architecture.md",
            "docs/getting-started.md", "docs/settings.md"} <= names


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_machine_path_or_issue_number(path):
    found = [f"{path.name}:{n}: {m.group(0)!r} in {line.strip()[:100]!r}"
             for n, line in _lines(path)
             for pattern in (MACHINE_PATH, ISSUE) for m in pattern.finditer(line)]
    assert not found, "\n".join(found)


def test_the_patterns_catch_what_they_are_for():
    # The test above can fail: each pattern finds what it is for, and not an anchor.
    assert MACHINE_PATH.search("see /work/shared/seeds/") and MACHINE_PATH.search("in /tmp/x")
    assert not MACHINE_PATH.search("s3://bucket/tmp/x") and not MACHINE_PATH.search("./tmp/")
    for text in ("issue 17", "Issues 11 and 13", "(#12)", "fixed in #7.", "issue #25"):
        assert ISSUE.search(text), text
    for text in ("[limits](deployments.md#3-global-concurrency-limits)", "(#3-global)",
                 "&#12;", "### 1. Prefect server", "C#1x", "color: #fff"):
        assert not ISSUE.search(text), text


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module of the package or a name in one."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:end]))
        except ModuleNotFoundError:
            continue
        for name in parts[end:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def _named_in(path: Path) -> list[tuple[int, str]]:
    """The package names and repository files a document names, with their line."""
    named = []
    for n, line in _lines(path):
        named += [(n, m.group(0)) for m in DOTTED.finditer(line)]
        named += [(n, f"{m.group(1)}.{name}") for m in FROM_IMPORT.finditer(line)
                  for name in re.split(r"[\s,]+", m.group(2)) if name]
        named += [(n, m.group(1)) for m in REPO_FILE.finditer(line)]
    return named


def _exists(name: str) -> bool:
    return (REPO / name).is_file() if name.endswith(".py") else _resolves(name)


@pytest.mark.parametrize("path", [p for p in DOCS if p.name != "CHANGELOG.md"],
                         ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_module_and_file_a_doc_names_exists(path):
    # The tree moves; a page naming a module that moved sends its reader nowhere. (The
    # CHANGELOG names the old paths on purpose: it says what moved where.)
    missing = [f"{path.name}:{n}: {name}" for n, name in _named_in(path) if not _exists(name)]
    assert not missing, "\n".join(missing)


def test_the_name_check_can_fail():
    assert _resolves("prefect_runway.money.prices.PriceTable")
    assert _resolves("prefect_runway.errors")
    assert not _resolves("prefect_runway.pricing.PriceTable")
    assert not _resolves("prefect_runway.money.prices.NoSuchName")
    assert _exists("tests/unit/test_docs.py") and not _exists("prefect_runway/costs.py")
    line = "from prefect_runway.pricing import price, PriceTable; see `prefect_runway/costs.py`"
    assert [m.group(1) for m in REPO_FILE.finditer(line)] == ["prefect_runway/costs.py"]
    assert FROM_IMPORT.search(line).group(2) == "price, PriceTable"


def test_every_relative_link_of_the_readme_resolves_to_a_file():
    targets = [m.group(1) for _, line in _lines(README) for m in LINK.finditer(line)]
    relative = [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and
                not t.startswith("#")]
    assert relative, "the README links to no page"
    missing = [t for t in relative if not (README.parent / t.split("#", 1)[0]).is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_every_docs_page_is_linked_from_the_readme_or_the_index():
    linked = {m.group(1).split("#", 1)[0] for path in (README, REPO / "docs" / "index.md")
              for _, line in _lines(path) for m in LINK.finditer(line)}
    pages = {p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")} - {
        "docs/index.md"}
    reached = {f"docs/{t}" for t in linked} | linked
    assert pages <= reached, f"pages no one links to: {sorted(pages - reached)}"


def test_the_readme_stays_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


def test_prefect_yaml_names_a_prefect_version_the_package_accepts():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    prefect = next(Requirement(d) for d in project["dependencies"]
                   if Requirement(d).name == "prefect")
    config = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    version = Version(str(config["prefect-version"]))
    assert version in prefect.specifier, (
        f"deployments/prefect.yaml says prefect-version {version}; pyproject requires {prefect}")


def test_the_settings_page_has_one_row_per_variable():
    from prefect_runway.settings import ENV_PREFIX, RunwaySettings

    rows = {m.group(1): line.split("|")[3].strip()
            for _, line in _lines(REPO / "docs" / "settings.md")
            if (m := re.match(r"\| `(PREFECT_RUNWAY_\w+)` \|", line))}
    read = {ENV_PREFIX + name.upper(): field.default
            for name, field in RunwaySettings.model_fields.items()}
    deploy = set(re.findall(r"PREFECT_RUNWAY_\w+",
                            (REPO / "deployments" / "prefect.yaml").read_text()))
    assert set(rows) == set(read) | deploy
    for variable, default in read.items():
        if isinstance(default, (int, float)):
            assert rows[variable].startswith(f"{default:g}"), (variable, rows[variable])


def test_the_errors_tree_names_every_exception_class():
    import inspect

    import prefect_runway.errors as errors

    classes = {name for name, value in vars(errors).items() if inspect.isclass(value)
               and issubclass(value, BaseException) and value.__module__ == errors.__name__}
    page = (REPO / "docs" / "getting-started.md").read_text(encoding="utf-8")
    tree = page[page.index("```\nPrefectRunwayError"):]
    tree = tree[:tree.index("```", 4)]
    missing = sorted(name for name in classes if not re.search(rf"\b{name}\b", tree))
    assert not missing, f"the errors tree in docs/getting-started.md lacks {missing}"


def test_the_architecture_page_names_every_module_of_each_folder():
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)/` \| (.*) \|$", page, re.M)}
    package = REPO / "prefect_runway"
    folders = sorted(p.name for p in package.iterdir() if (p / "__init__.py").is_file()
                     and p.name not in ("emulator", "testing"))
    assert sorted(rows) == folders
    missing = [f"{folder}/{module.name}" for folder in folders
               for module in sorted((package / folder).glob("*.py"))
               if module.stem not in ("__init__", "__main__")
               and f"`{module.name}`" not in rows[folder]]
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_the_options_table_names_every_option_of_each_group():
    from prefect_runway.flows import options

    page = (REPO / "docs" / "getting-started.md").read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if re.match(r"\| `(still|video|run|review_options)`", line)]
    assert len(rows) == 4
    for row in rows:
        groups = re.findall(r"\(`(\w+)`(?:; a storyboard's `(\w+)`)?\)", row)
        assert groups, row
        for name in (n for pair in groups for n in pair if n):
            fields = getattr(options, name).model_fields
            missing = [f for f in fields if f"`{f}`" not in row.split("|")[2]]
            assert not missing, f"{name}: the options table lacks {missing}"
