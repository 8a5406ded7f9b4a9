"""Command-line values Hydra cannot parse are quoted for it (medis.runtime.cli.quote_overrides)."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from medis.runtime.cli import hydra_quoted, quote_overrides

PARSER = OverridesParser.create()


@pytest.mark.parametrize("value", ["/data/my data/dérmato", "/tmp/a(b)", "/tmp/it's", "/a#b=c",
                                   "/x/\\'y", "数据/图像"])
def test_an_unparsable_value_is_quoted_to_exactly_the_value_typed(value: str) -> None:
    [arg] = quote_overrides([f"data.root={value}"])
    assert arg != f"data.root={value}"
    assert PARSER.parse_override(arg).value() == value


@pytest.mark.parametrize("arg", ["data.root=/data/my data/x", "losses.names=[bce,dice]", "seed=1,2",
                                 "hydra.output_subdir=null", "attack.budget.eps=0.03", "+extra=1", "~logger",
                                 "data.root='/already/quoted é'", "data.root=C:\\data\\"])
def test_what_hydra_parses_is_left_alone(arg: str) -> None:
    assert quote_overrides([arg]) == [arg]


def test_a_sweep_keeps_its_items_and_flags_keep_their_values() -> None:
    args = quote_overrides(["-m", "data.root=/a é,/b è", "--config-name", "x=é", "-cd=/c"])
    assert args[0] == "-m" and args[2:] == ["--config-name", "x=é", "-cd=/c"]
    assert [item.text for item in PARSER.parse_override(args[1]).value().list] == ["/a é", "/b è"]


def test_hydra_quoting_doubles_backslashes_only_before_a_quote_or_the_end() -> None:
    assert hydra_quoted("a\\b") == "'a\\b'"
    assert hydra_quoted("a\\") == "'a\\\\'"
    assert hydra_quoted("it's") == "'it\\'s'"
