"""The flow table is checked when defined; the prompt catalogs match it and each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flows.call_flow import CALL_FLOW
from ivr.flows.machine import (
    ENTERED,
    Action,
    Entry,
    Flow,
    FlowDefinitionError,
    Go,
    Menu,
    Say,
    State,
    said,
)
from ivr.flows.pin_policy import PinRejection
from ivr.prompts import PACKAGE_DIR, Catalog, CatalogError

END = State("bye", said("goodbye"), Say())


def define(*states: State) -> Flow:
    return Flow.define(start="a", too_many_misses="bye", states=[*states, END])


def test_a_target_that_does_not_exist_is_refused() -> None:
    with pytest.raises(FlowDefinitionError, match="unknown"):
        define(State("a", said("x"), Menu(), on={"1": "nowhere"}))


def test_an_unreachable_state_is_refused() -> None:
    with pytest.raises(FlowDefinitionError, match="unreachable.*island"):
        define(State("a", said("x"), Menu(), on={"1": "bye"}),
               State("island", said("x"), Menu(), on={"1": "bye"}))


def test_the_miss_state_must_end_the_call() -> None:
    # Every state that gathers can always miss, so a miss state that ends the call is
    # what guarantees that every state can reach an end.
    with pytest.raises(FlowDefinitionError, match="must end the call"):
        Flow.define(start="a", too_many_misses="a", states=[
            State("a", said("x"), Menu(), on={"1": "a"}),
        ])


def test_a_state_that_takes_no_key_and_does_not_end_is_refused() -> None:
    with pytest.raises(FlowDefinitionError, match="takes no key"):
        define(State("a", said("x"), Menu(), on={"1": "b"}), State("b", said("x"), Entry()))


def test_a_menu_key_must_be_one_key() -> None:
    with pytest.raises(FlowDefinitionError, match="longer than one"):
        define(State("a", said("x"), Menu(), on={"12": "bye"}))


def test_an_undeclared_target_of_an_action_is_refused() -> None:
    sneaky = Action(lambda _ctx, _digits: Go("bye"), ("elsewhere",))
    with pytest.raises(FlowDefinitionError, match="unknown"):
        define(State("a", said("x"), Entry(), on={ENTERED: sneaky}))


def test_the_call_flow_ends_only_where_it_says_goodbye() -> None:
    ends = {name for name, state in CALL_FLOW.states.items() if state.is_end}
    assert ends == {
        "account_not_found", "auth_failed", "transferred", "no_input_goodbye", "goodbye", "payment_unknown"
    }


def test_catalogs_have_the_same_keys_in_both_languages() -> None:
    catalog = Catalog.load()
    assert set(catalog.texts["en"]) == set(catalog.texts["es"])


def test_every_prompt_the_flow_declares_exists_in_every_language() -> None:
    catalog = Catalog.load()
    declared = CALL_FLOW.prompt_keys()
    assert declared  # every state declares its keys
    assert declared <= catalog.keys()
    for rejection in PinRejection:
        assert rejection.prompt_key in catalog.keys()


def test_every_notice_the_flow_code_names_exists() -> None:
    import re

    catalog = Catalog.load()
    source = "\n".join(p.read_text() for p in Path(PACKAGE_DIR.parent, "flows").glob("*.py"))
    named = set(re.findall(r'Phrase\("([a-z_]+)"', source))
    named |= set(re.findall(r'notice_then\("[a-z_]+", "([a-z_]+)"\)', source))
    named |= {"welcome", "error_apology", "invalid_entry"}
    assert named <= catalog.keys(), named - catalog.keys()


def test_a_catalog_missing_a_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text((PACKAGE_DIR / "en.toml").read_text())
    (tmp_path / "es.toml").write_text(
        "\n".join(line for line in (PACKAGE_DIR / "es.toml").read_text().splitlines()
                  if not line.startswith("goodbye ="))
    )
    with pytest.raises(CatalogError, match="goodbye"):
        Catalog.load(tmp_path)


def test_a_catalog_with_other_placeholders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text((PACKAGE_DIR / "en.toml").read_text())
    (tmp_path / "es.toml").write_text(
        (PACKAGE_DIR / "es.toml").read_text().replace("{amount}, con", "{monto}, con")
    )
    with pytest.raises(CatalogError, match="placeholders"):
        Catalog.load(tmp_path)


def test_a_utility_can_reword_a_prompt_without_code(tmp_path: Path) -> None:
    for lang in ("en", "es"):
        text = (PACKAGE_DIR / f"{lang}.toml").read_text()
        (tmp_path / f"{lang}.toml").write_text(text.replace('goodbye = "', 'goodbye = "Bye now. '))
    assert Catalog.load(tmp_path).text("en", "goodbye").startswith("Bye now.")
