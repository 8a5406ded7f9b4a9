"""docs/configuration.md lists every registered update rule, loss, target kind and attack config, and
nothing that is not registered: the registries and conf/attack drive this test, so a new part fails
here with the line to add, not with a count or list kept by hand somewhere else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medis.attacks.rules import RULES
from medis.attacks.targets import TARGET_KINDS
from medis.losses import LOSS_NAMES

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "configuration.md"
SECTIONS = {
    "### `attack/rule`": ("update rule", lambda: set(RULES)),
    "### `losses`": ("loss", lambda: set(LOSS_NAMES)),
    "### `target`": ("target kind", lambda: set(TARGET_KINDS)),
    "### `attack` ": ("attack config", lambda: {path.stem for path in (REPO / "conf" / "attack").glob("*.yaml")}),
}


def listed(heading: str) -> set[str]:
    """The names in backticks in the first cell of every table row of the section under ``heading``."""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    names: set[str] = set()
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not set(line) <= set("|- "):
            first = line.split("|")[1]
            names |= set(re.findall(r"`([\w/]+)`", first))
    return names


@pytest.mark.parametrize("heading", sorted(SECTIONS))
def test_every_registered_name_is_documented(heading: str) -> None:
    what, registered = SECTIONS[heading]
    documented = listed(heading) - {"option", "loss", "kind"}
    missing = sorted(registered() - documented)
    assert not missing, f"add a row for each {what} {missing} to the table under '{heading.strip()}' in docs/configuration.md"
    stale = sorted(documented - registered())
    assert not stale, f"docs/configuration.md lists {what}(s) {stale} under '{heading.strip()}' that are not registered"


def test_no_page_counts_a_whole_registry() -> None:
    """A count of a whole registry ("18 losses") goes stale with the next entry: no user page states
    one (counts of a selection, such as the paper's six losses, are facts and stay)."""
    sizes = {"losses": len(LOSS_NAMES), "update rules": len(RULES), "rules": len(RULES),
             "target kinds": len(TARGET_KINDS), "attacks": len(SECTIONS["### `attack` "][1]())}
    count = re.compile(r"\b(\d+) (losses|update rules|rules|target kinds|attacks)\b")
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = [f"{page.relative_to(REPO)}: {match.group(0)}" for page in pages
             for match in count.finditer(page.read_text(encoding="utf-8")) if int(match.group(1)) == sizes[match.group(2)]]
    assert not found, found
