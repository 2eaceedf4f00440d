"""README.md and docs/: the configuration reference follows the code's settings tables, and every link, path,
module, variable and make target the pages name exists."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from sandbox.stack.settings import DEFAULT_PORTS, STACK_ENV_KEYS, STACK_SETTINGS
from vdi.provider import LEOSTREAM_CONNECTION
from vdi.settings import SETTINGS
from vdi.states import DeliveryStatus
from vdi.store import deliveries
from webhook_bridge.settings import from_environment

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
CONFIGURATION = REPO_ROOT / "docs" / "configuration.md"
OPERATIONS = REPO_ROOT / "docs" / "operations.md"
PAGES = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]

# Variables the pages may name that no settings table lists, each read directly by one program: the stack
# launcher, gunicorn's config, the test suite's fixtures.
UNTABLED_VARIABLES = {
    "VDI_LOCAL_DIR", "VDI_DEMO", "VDI_TEST_DATABASE_URL",
    "BRIDGE_BIND", "BRIDGE_WORKERS", "BRIDGE_WORKER_CLASS", "BRIDGE_THREADS", "BRIDGE_LOG_LEVEL",
}
OUR_VARIABLE = re.compile(r"\b(?:VDI|BRIDGE)_[A-Z0-9_]*[A-Z0-9]\b")
SANDBOX_VARIABLE = re.compile(r"\b(?:JIRA|LEOSTREAM)_SANDBOX_[A-Z0-9_]*[A-Z0-9]\b")
TOP_LEVEL = {"dags", "plugins", "include", "webhook_bridge", "sandbox", "tests", "bench", "docs", ".ci"}
OUR_PACKAGES = ("vdi", "webhook_bridge", "sandbox", "bench")


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def table_rows(markdown: str) -> Iterator[list[str]]:
    """The cells of every table row (separator rows left out)."""
    for line in markdown.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[\s|:-]+\|", line):
            yield [cell.strip() for cell in line.strip().strip("|").split("|")]


def rows_naming(markdown: str, variable: str) -> list[list[str]]:
    """The table rows whose first cell names ``variable`` (in backticks)."""
    return [row for row in table_rows(markdown) if f"`{variable}`" in row[0]]


def code_spans(markdown: str) -> list[str]:
    """Inline code and the lines of fenced blocks."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.S | re.M)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M))
    return inline + [line for block in fenced for line in block.splitlines()]


class RecordingEnviron(Mapping):
    """An empty environment that remembers every variable asked for."""

    def __init__(self):
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def get(self, key: str, default=None):
        self.asked.add(key)
        return default

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return False

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


def bridge_variables() -> set[str]:
    environ = RecordingEnviron()
    from_environment(environ)
    return environ.asked


def source_files() -> Iterator[Path]:
    """The repository's Python files (not the virtualenv, the local stack's state or this file)."""
    for directory, subdirectories, files in os.walk(REPO_ROOT):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".") and d != "__pycache__"]
        for name in files:
            path = Path(directory) / name
            if name.endswith(".py") and path != Path(__file__).resolve():
                yield path


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the page's headings."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_configuration_lists_every_dag_setting_with_its_default():
    doc = text(CONFIGURATION)
    for setting in SETTINGS:
        rows = rows_naming(doc, setting.variable)
        assert rows, f"{setting.variable} is missing from docs/configuration.md"
        expected = "unset" if setting.default is None else f"`{setting.default}`"
        assert any(len(row) > 1 and row[1] == expected for row in rows), (
            f"docs/configuration.md gives {setting.variable} another default than {expected}: {rows}")


def test_configuration_lists_exactly_the_leostream_connection_extras_with_their_defaults():
    doc = text(CONFIGURATION)
    fields = LEOSTREAM_CONNECTION["conn-fields"]
    for name, field in fields.items():
        rows = rows_naming(doc, name)
        assert rows, f"docs/configuration.md has no row for the leostream extra {name}"
        if "default" in field["schema"]:
            default = str(field["schema"]["default"]).lower()
            assert any(default in row[1].lower() for row in rows), f"the extra {name} defaults to {default}: {rows}"
    table = doc.split("| extra |", 1)[1].split("\n\n", 1)[0]
    listed = {name for row in table_rows(table) for name in re.findall(r"`(\w+)`", row[0])}
    assert listed == set(fields), f"the extras table lists {sorted(listed)}, the provider {sorted(fields)}"


def test_configuration_names_every_variable_the_bridge_reads():
    variables = bridge_variables()
    assert "JIRA_WEBHOOK_SECRET" in variables  # the recorder sees the reads at all
    doc = text(CONFIGURATION)
    missing = sorted(v for v in variables if not rows_naming(doc, v))
    assert not missing, f"docs/configuration.md has no row for the bridge's {missing}"


def test_configuration_names_the_local_stack_keys_and_port_variables_with_their_defaults():
    doc = text(CONFIGURATION)
    missing = [key for key in STACK_ENV_KEYS if not rows_naming(doc, key)]
    assert not missing, f"docs/configuration.md has no row for the stack.env keys {missing}"
    for variable, port in DEFAULT_PORTS.values():
        rows = rows_naming(doc, variable)
        assert any(len(row) > 1 and row[1] == str(port) for row in rows), f"{variable} (default {port}) is missing"


def test_every_vdi_and_bridge_variable_the_pages_name_is_one_the_code_reads():
    known = ({s.variable for s in SETTINGS} | bridge_variables() | set(STACK_ENV_KEYS)
             | {s.variable for s in STACK_SETTINGS}
             | {variable for variable, _ in DEFAULT_PORTS.values()} | UNTABLED_VARIABLES)
    for page in PAGES:
        unknown = sorted(set(OUR_VARIABLE.findall(text(page))) - known)
        assert not unknown, f"{page.relative_to(REPO_ROOT)} names variables no code reads: {unknown}"


def test_untabled_variables_are_read_by_the_code_and_named_in_the_pages():
    sources = "\n".join(path.read_text(encoding="utf-8") for path in source_files())
    pages = "\n".join(text(page) for page in PAGES)
    for variable in sorted(UNTABLED_VARIABLES):
        assert f'"{variable}"' in sources, f"no Python file reads {variable}: drop it from the docs and this list"
        assert variable in pages, f"no page names {variable}: drop it from this list"


def test_sandbox_variables_the_pages_name_are_read_by_the_sandboxes():
    sources = "\n".join(path.read_text(encoding="utf-8") for path in source_files())
    for page in PAGES:
        for variable in set(SANDBOX_VARIABLE.findall(text(page))):
            assert f'"{variable}"' in sources, f"{page.relative_to(REPO_ROOT)} names {variable}, which nothing reads"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_point_to_existing_files_and_headings(page):
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text(page)):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in heading_anchors(text(linked)), f"{page.name} links to {target}: no such heading"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_repository_paths_the_page_names_exist(page):
    for span in code_spans(text(page)):
        for token in re.split(r"[\s,()]+", span):
            parts = token.split("/")
            if len(parts) < 2 or parts[0] not in TOP_LEVEL:
                continue
            # Up to the first placeholder: `plugins/vdi/store/migrations/NNNN_name.sql`, `.../<sha256>.tar.gz`.
            concrete = re.split(r"[<{*]|NNNN", token)[0]
            path = concrete if concrete == token else concrete.rsplit("/", 1)[0]
            assert (REPO_ROOT / path).exists(), f"{page.name} names {token}, which does not exist"


def resolves(name: str) -> bool:
    """Whether ``name`` is one of our modules, or an attribute reached from one (``vdi.settings.load``)."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_python_modules_and_names_the_page_mentions_exist(page):
    spans = code_spans(text(page))
    name_pattern = rf"(?:{'|'.join(OUR_PACKAGES)})(?:\.\w+)+(?:\(\))?"
    for name in sorted({span.removesuffix("()") for span in spans if re.fullmatch(name_pattern, span)}):
        assert resolves(name), f"{page.name} names {name}, which does not exist"
    for module in sorted({m for span in spans for m in re.findall(r"-m ([\w.]+)", span)
                          if m.split(".")[0] in OUR_PACKAGES}):
        spec = importlib.util.find_spec(module)
        runnable = spec is not None and (spec.submodule_search_locations is None
                                         or importlib.util.find_spec(f"{module}.__main__") is not None)
        assert runnable, f"{page.name} runs `python -m {module}`, which cannot run"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_make_targets_the_page_names_exist(page):
    targets = set(re.findall(r"^([\w-]+):", text(REPO_ROOT / "Makefile"), flags=re.M))
    for span in code_spans(text(page)):
        for target in re.findall(r"(?:^|\s)make ([a-z][\w-]*)", span):
            assert target in targets, f"{page.name} names `make {target}`, which the Makefile does not define"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_page_carries_no_test_counts_or_benchmark_figures(page):
    figures = re.findall(r"\b\d+ (?:passed|tests)\b|\d\s*(?:req|requests|deliveries|runs)/s\b|\bp(?:50|95|99)\b",
                         text(page))
    assert not figures, f"{page.name} carries figures that go stale ({figures}): they belong in bench/RESULTS.md"


def test_the_documented_requeue_command_makes_a_refused_delivery_pending_again(app_database_url):
    import psycopg

    block = next(b for b in re.findall(r"^\s*```bash\n(.*?)^\s*```", text(OPERATIONS), flags=re.S | re.M)
                 if "deliveries.requeue" in b)
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        deliveries.record(conn, deliveries.NewDelivery(
            "refused-1", False, "jira:issue_updated", "VDI-1", {}, DeliveryStatus.PENDING,
            dag_id="vdi_provision", dag_run_id="jira__refused-1"))
        deliveries.mark_failed(conn, "refused-1", "HTTP 400 conf refused")
        assert deliveries.get_status(conn, "refused-1") is DeliveryStatus.FAILED
    command = "\n".join(line.strip() for line in block.splitlines()).replace("<delivery id>", "refused-1")
    result = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "VDI_DATABASE_URL": app_database_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    with psycopg.connect(app_database_url) as conn:
        assert deliveries.get_status(conn, "refused-1") is DeliveryStatus.PENDING
