"""Call Capture: who is calling, as a phone number that can be matched to accounts on file."""

from callcapture.numbers import InvalidPhoneNumber, normalize_caller_id, normalize_on_file

__all__ = ["InvalidPhoneNumber", "normalize_caller_id", "normalize_on_file"]
