"""``ivr.twiml.render`` keeps a template per reply shape: its TwiML must be, byte for byte,
what the twilio library builds for the same reply, whatever the texts hold."""

from __future__ import annotations

from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.flows.reply import Dial, Gather, PayPrompt, PayRequest, RecordRequest, Reply, Speech
from ivr.twiml import Style, build, empty, render

STYLES = (
    Style(base_url="https://coop.example/securepay"),
    Style(
        base_url="http://127.0.0.1:8080",
        voices={"en": "Polly.Joanna-Neural", "es": "Polly.Lupe"},
        pay_languages={"en": "en-US", "es": "es-MX"},
    ),
)

# What a prompt may hold: words, amounts, markup characters, accents, the marker's own
# private-use characters, nothing at all.
texts = st.one_of(
    st.just(""),
    st.sampled_from(["Your balance is $123.45 & due <soon>.", "Oprima 2. Número ñ", "\ue000 0 \ue001"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
)
speech = st.builds(Speech, texts, st.sampled_from(["en", "es"]))
speeches = st.lists(speech, max_size=3).map(tuple)
gathers = st.builds(
    Gather,
    speeches,
    st.one_of(st.none(), st.integers(1, 20)),
    st.sampled_from(["", "#"]),
    st.integers(1, 15),
    st.booleans(),
)
pay_prompts = st.builds(
    PayPrompt,
    st.sampled_from(["payment-card-number", "expiration-date", "security-code"]),
    speech,
    st.one_of(st.none(), st.sampled_from(["timeout", "invalid-card-number"])),
)
pays = st.builds(
    PayRequest,
    st.sampled_from(["Default", "stripe_connector"]),
    st.integers(1, 2),
    st.integers(5, 15),
    st.sampled_from(["en", "es"]),
    st.sampled_from([("visa", "mastercard"), ("visa", "mastercard", "amex", "discover")]),
    st.lists(pay_prompts, max_size=3).map(tuple),
)
replies = st.builds(
    Reply,
    step=st.integers(0, 60),
    speech=speeches,
    gather=st.one_of(st.none(), gathers),
    pay=st.one_of(st.none(), pays),
    record=st.one_of(st.none(), st.builds(RecordRequest, st.integers(5, 120), st.integers(1, 10))),
    dial=st.one_of(st.none(), st.builds(Dial, st.sampled_from(["+18005550100", "+1 800 555 0199"]))),
    hangup=st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(reply=replies, style_index=st.integers(0, len(STYLES) - 1))
def test_a_reply_renders_as_the_library_builds_it_first_time_and_from_its_template(
    reply: Reply, style_index: int
) -> None:
    style = STYLES[style_index]
    built = build(reply, style)
    assert render(reply, style) == built
    assert render(reply, style) == built  # the second time from the kept template


def test_two_replies_of_one_shape_share_a_template_and_keep_their_own_texts() -> None:
    style = Style(base_url="https://coop.example")
    first = Reply(step=4, gather=Gather((Speech("Your balance is $1.00.", "en"),), 1, "", 6))
    second = Reply(step=4, gather=Gather((Speech("Your balance is $2 & <more>.", "en"),), 1, "", 6))
    assert render(first, style) == build(first, style)
    assert render(second, style) == build(second, style)
    assert "$2 &amp; &lt;more&gt;." in render(second, style)
    assert len(style.templates) == 1


def test_the_shape_carries_every_field_of_a_reply() -> None:
    """``render``'s shape is built field by field: a new field must be carried there
    (ivr.twiml._shape), or two replies that differ in it would share one template."""
    assert [f.name for f in fields(Reply)] == ["step", "speech", "gather", "pay", "record", "dial", "hangup"]
    assert [f.name for f in fields(Gather)] == [
        "speech", "num_digits", "finish_on_key", "timeout_seconds", "empty_result",
    ]  # fmt: skip
    assert [f.name for f in fields(PayRequest)] == [
        "connector", "max_attempts", "timeout_seconds", "language", "card_types", "prompts",
    ]  # fmt: skip
    assert [f.name for f in fields(PayPrompt)] == ["step", "speech", "error_type"]
    assert [f.name for f in fields(Speech)] == ["text", "language"]


def test_the_empty_response_is_the_librarys() -> None:
    assert empty() == '<?xml version="1.0" encoding="UTF-8"?><Response />'
