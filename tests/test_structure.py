"""The shape of the package: no import cycle (function-level imports included), no module over 400
lines, every reference to a doc or a source path resolves inside the repository, README stays a
short user guide."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "medis"
MAX_LINES = 400
README_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """The medis modules a file imports anywhere in it (module level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in MODULES}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_import_cycle_inside_the_package() -> None:
    graph = {name: imported_modules(path) - {name} for name, path in MODULES.items()}
    assert "medis.attacks.engine" in graph["medis.attacks.ensemble"]  # the scan sees imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_400_lines(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines"


def project_texts() -> dict[Path, str]:
    """Every text of the project a user or developer reads: sources, configs, docs, benchmarks, tests."""
    patterns = ("src/**/*.py", "conf/**/*.yaml", "docs/*.md", "bench/*.py", "bench/*.md", "tests/**/*.py",
                "*.md", "*.py", "Makefile")
    return {path: path.read_text(encoding="utf-8") for pattern in patterns for path in REPO.glob(pattern)
            if ".venv" not in path.parts and "egg-info" not in str(path)}


def test_every_doc_and_source_reference_resolves() -> None:
    texts = project_texts()
    reference = re.compile(r"(?<![\w/.-])((?:docs|src/medis|conf|bench|tests)/[\w./-]*[\w])(?![\w{<*])")
    missing = []
    for path, text in texts.items():
        for match in reference.finditer(text):
            target = match.group(1).rstrip(".")
            if "*" in target or "<" in target:
                continue
            if not (REPO / target).exists():
                missing.append(f"{path.relative_to(REPO)}: {target}")
    assert not missing, missing
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:  # Markdown links
        for link in re.findall(r"\]\((?!https?:)([^)#\s]+)", path.read_text(encoding="utf-8")):
            assert (path.parent / link).exists(), f"{path.name}: link {link}"


def test_no_reference_to_files_outside_the_repository() -> None:
    outside = re.compile(r"\b(SPEC|ARCHITECTURE|DATA)\.md\b|shared/")
    found = [str(path.relative_to(REPO)) for path, text in project_texts().items() if outside.search(text)
             and path.name != "test_structure.py"]
    assert not found, found


def test_user_docs_speak_of_the_project_not_of_its_making() -> None:
    words = re.compile(r"\b(issues?|sessions?)\b", re.IGNORECASE)
    docs = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = [f"{path.relative_to(REPO)}: {match.group(0)}" for path in docs
             for match in words.finditer(path.read_text(encoding="utf-8"))]
    assert not found, found


def test_readme_is_a_short_user_guide() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_LINES, len(lines)
    for page in ("docs/method.md", "docs/architecture.md", "docs/configuration.md", "docs/data.md"):
        assert any(page in line for line in lines), page
