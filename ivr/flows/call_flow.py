"""The Secure Pay call, one row per state (contract section 2).

Read a row as: the state's name; what the caller hears; what is gathered; where each
key leads. A wrong key or no input is a miss unless a row says otherwise (three misses
end the call politely); `9` repeats a menu. Adding a menu option is one key here and
one prompt per language in ``ivr/prompts``. ``Flow.define`` checks the table at import.
"""

from __future__ import annotations

from ivr.flows import autopay, charge, fast_lane, identify, payment, pin, texting
from ivr.flows.machine import (
    DIAL_RESULT,
    ENTERED,
    PAY_RESULT,
    RECORDED,
    REPEAT,
    Entry,
    Flow,
    Menu,
    Pay,
    Record,
    Say,
    State,
    Transfer,
    said,
)
from ivr.flows.menu import (
    after_transfer,
    enter_account_menu,
    member_services_from,
    speak_account_menu,
)

CALL_FLOW = Flow.define(
    start="language",
    too_many_misses="no_input_goodbye",
    on_call=identify.capture_caller,
    states=[
        # -- 2.1 language (no input within ~2 s: the greeting's language) ------------------
        State("language", identify.speak_language_menu, Menu(wait="language"),
              on={"1": identify.choose_language, "2": identify.choose_language},
              timeout=identify.choose_language),
        # -- 2.2 identify (Call Capture, or keyed); one account: its PIN step at once ----
        State("choose_account", identify.speak_capture_choices, Menu(),
              on={**{str(k): identify.select_captured for k in range(1, 9)},
                  "9": "enter_account"}),
        State("enter_account", said("enter_account"), Entry(max_digits=20),
              on={ENTERED: identify.account_entered, "*": identify.back_to_capture}),
        State("account_not_found", said("account_not_found"), Say(), outcome="unidentified"),
        # -- 2.3 PIN (`*`: a different account) ----------------------------------------------
        State("pin_entry", identify.speak_pin_entry, Entry(digits=4),
              on={ENTERED: pin.pin_entered, "*": identify.switch_account}, guard="identified"),
        State("pin_wrong", said("pin_wrong"), Menu(),
              on={"1": "pin_entry", "2": pin.forgot_pin, "9": REPEAT}, guard="identified"),
        State("ssn_entry", pin.speak_ssn_entry, Entry(digits=4),
              on={ENTERED: pin.ssn_entered, "*": identify.switch_account}, guard="identified"),
        State("pin_referral", pin.speak_pin_referral, Menu(),
              on={"0": member_services_from("pin_referral"), "2": identify.switch_account,
                  "9": REPEAT}),
        State("new_pin", pin.speak_new_pin, Entry(digits=4),
              on={ENTERED: pin.pin_chosen, "*": identify.switch_account}, guard="may_set_pin"),
        State("new_pin_confirm", said("new_pin_confirm"), Entry(digits=4),
              on={ENTERED: pin.pin_confirmed, "*": pin.back_to_new_pin}, guard="may_set_pin"),
        State(pin.AUTH_FAILED, said("auth_failed"), Say(), outcome="auth-failed"),
        # -- 2.4 account menu (`1`: the one-press offer, else the full balance) ------------
        State("account_menu", speak_account_menu, Menu(),
              on={"1": fast_lane.pay_now, "2": payment.pay_other, "3": payment.say_last_payment,
                  "4": autopay.open_autopay,
                  "5": identify.another_account,
                  "0": member_services_from("account_menu"), "9": REPEAT},
              guard="verified", enter=enter_account_menu),
        # -- 2.5 amount, 2.6 method, 2.7 confirm ------------------------------------------
        State("enter_amount", payment.speak_enter_amount, Entry(max_digits=12),
              on={ENTERED: payment.amount_entered, "#": payment.full_balance_keyed,
                  "*": "account_menu"}, guard="verified"),
        State("choose_method", payment.speak_methods, Menu(),
              on={**{str(k): payment.method_chosen for k in range(1, 8)},
                  "8": payment.new_card, "*": "account_menu", "9": REPEAT},
              guard="verified"),
        State("save_card", said("save_card"), Menu(),
              on={"1": payment.save_choice, "2": payment.save_choice, "*": payment.back_from_card,
                  "9": REPEAT},
              guard="verified"),
        State("card_entry", said("card_entry"), Pay(max_attempts=2, prompts=payment.card_prompts),
              on={PAY_RESULT: payment.card_collected}, guard="verified"),
        State("card_retry", said("card_retry"), Menu(),
              on={"1": payment.retry_card, "2": "account_menu", "9": REPEAT}, guard="verified"),
        State("confirm", payment.speak_confirm, Menu(),
              on={"1": charge.confirm_payment, "2": charge.cancel_payment, "9": REPEAT},
              guard="verified"),
        State("payment_done", texting.speak_payment_done, Menu(),
              on={"1": REPEAT, "2": "account_menu", "3": texting.text_receipt,
                  "5": identify.another_account},
              timeout="goodbye", guard="verified", enter=texting.take_text_news),
        State("payment_declined", said("payment_declined"), Menu(),
              on={"1": charge.another_method, "2": "account_menu", "9": REPEAT}, guard="verified"),
        State("payment_unknown", said("payment_unknown"), Say(), outcome="payment-unknown"),
        # -- 2.10 Auto Pay (ivr/flows/autopay.py) -----------------------------------------
        State(autopay.INTRO, said("autopay_intro"), Menu(),
              on={"1": autopay.start_enroll, "*": "account_menu", "9": REPEAT}, guard="verified"),
        State(autopay.METHODS, autopay.speak_methods, Menu(),
              on={**{str(k): autopay.method_chosen for k in range(1, 8)},
                  "8": autopay.new_card, "*": autopay.back, "9": REPEAT},
              guard="verified"),
        State(autopay.CARD, said("autopay_card_entry"), Pay(max_attempts=2, prompts=payment.card_prompts),
              on={PAY_RESULT: autopay.card_collected}, guard="verified"),
        State(autopay.RETRY, said("card_retry"), Menu(),
              on={"1": autopay.retry_card, "2": "account_menu", "9": REPEAT}, guard="verified"),
        State(autopay.TERMS, autopay.speak_terms, Menu(),
              on={"1": autopay.agree, "2": autopay.decline, "9": REPEAT}, guard="verified"),
        State(autopay.RECORD, said("autopay_record_consent"), Record(),
              on={RECORDED: autopay.recorded}, guard="verified"),
        State(autopay.PAY_NOW, autopay.speak_pay_now, Menu(),
              on={"1": autopay.pay_now, "2": "account_menu", "9": REPEAT}, guard="verified"),
        State(autopay.ENROLLED, autopay.speak_enrolled, Menu(),
              on={"1": autopay.change_method, "2": autopay.CANCEL, "*": "account_menu", "9": REPEAT},
              guard="verified"),
        State(autopay.CANCEL, said("autopay_cancel_confirm"), Menu(),
              on={"1": autopay.cancel, "2": autopay.ENROLLED, "9": REPEAT}, guard="verified"),
        # -- 2.8, 2.9 and the polite ends -------------------------------------------------
        State("transfer", said("transfer"), Transfer(),
              on={DIAL_RESULT: after_transfer(("account_menu", "pin_referral"))}, outcome="transferred"),
        State("transferred", said("goodbye"), Say(), outcome="transferred"),
        State("no_input_goodbye", said("no_input_goodbye"), Say(), outcome="no-input"),
        State("goodbye", texting.speak_goodbye, Say(), enter=texting.take_text_news),
    ],
)
