"""The caller's minute (issue 9, item 3): words said up to the confirmation number,
timeouts waited through, the estimate at 150 words a minute."""

from __future__ import annotations

from ivr.cli.minute import PAY_DEFAULT_WORDS, Minute, measure, render
from ivr.softphone import CallTranscript
from ivr.softphone.transcript import Exchange

URL = "https://ivr.example.test/ivr/step?n=1"


def doc(inner: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>'


def gather(words: str, timeout: int) -> str:
    return (
        f'<Gather input="dtmf" action="/ivr/step?n=1" method="POST" timeout="{timeout}">'
        f'<Say language="en-US">{words}</Say></Gather><Redirect method="POST">/ivr/step?n=1</Redirect>'
    )


def test_words_waits_and_pay_prompts_up_to_the_confirmation_number() -> None:
    call = CallTranscript("CA" + "0" * 32, exchanges=[
        Exchange("POST", URL, {"CallStatus": "ringing"}, 200, doc(gather("one two three", 2))),
        # no Digits: the caller let the 2 s run out
        Exchange("POST", URL, {}, 200, doc(gather("four five", 8))),
        Exchange("POST", URL, {"Digits": "0473"}, 200, doc('<Say language="en-US">six</Say><Pay />')),
        Exchange("POST", URL, {"Result": "success"}, 200, doc(
            '<Say language="en-US">Your confirmation number is 1 2 3 4 5 6 7 8 9 0.</Say>'
            + gather("never counted", 6)
        )),
        Exchange("POST", URL, {}, 200, doc('<Say language="en-US">not counted either</Say>')),
    ])
    minute = measure("a path", call, 45)
    assert minute.words == 3 + 2 + 1 + PAY_DEFAULT_WORDS + 14
    assert minute.waited_seconds == 2 and minute.confirmed
    assert minute.estimate_seconds == minute.words * 60 / 150 + 2
    assert minute.met is (minute.estimate_seconds <= 45)


def test_pay_prompts_of_our_own_count_their_first_try_only() -> None:
    pay = (
        '<Pay><Prompt for="payment-card-number"><Say language="en-US">Card number now.</Say></Prompt>'
        '<Prompt for="payment-card-number" errorType="timeout"><Say language="en-US">Still there?</Say>'
        '</Prompt></Pay>'
    )
    call = CallTranscript("CA" + "1" * 32, exchanges=[Exchange("POST", URL, {}, 200, doc(pay))])
    minute = measure("pay", call)
    assert (minute.words, minute.confirmed, minute.met) == (3, False, None)


def test_the_table_says_each_target_met_or_missed() -> None:
    minutes = [Minute("fast", 100, 2, True, 45), Minute("slow", 200, 0, True, 45), Minute("x", 1, 0, False)]
    lines = render(minutes)
    assert lines[1].endswith("<= 45 s met") and lines[2].endswith("<= 45 s MISSED")
    assert lines[3].endswith("- (no confirmation number was said)")
