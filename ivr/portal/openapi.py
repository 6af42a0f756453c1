"""The OpenAPI 3.1 document of the portal API, written by hand.

Served at ``GET /api/v1/openapi.json``. The tests check that it is a valid OpenAPI
document, that it names exactly the routes the app serves under ``/api/v1``, and that
every answer the tests see matches the schema written here for it.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["document"]

JSON = "application/json"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


# Printable ASCII, not blank (the mandate's browser details).
_PRINTABLE = "^[\\x20-\\x7e]*[\\x21-\\x7e][\\x20-\\x7e]*$"


def _schema(name: str) -> dict[str, str]:
    return _ref("schemas", name)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str, codes: list[str]) -> dict[str, Any]:
    schema = {
        "allOf": [
            _schema("Error"),
            {"properties": {"error": {"properties": {"code": {"enum": codes}}}}},
        ]
    }
    return _json(schema, description)


_DESCRIPTION = """\
The web portal's window on what SecurePay keeps for an account: its stored payment
methods and the phone numbers Call Capture recognizes. The IVR and the portal share
one store: a card saved during a call shows here with `created_via: ivr`.

**Authentication.** Every request carries `Authorization: Bearer <SECUREPAY_PORTAL_TOKEN>`
(never in a query string). A missing or wrong token is answered 401 with a
`WWW-Authenticate: Bearer` challenge. When the server has no `SECUREPAY_PORTAL_TOKEN`,
the API is off: every path under `/api` answers 404.

**Accounts** are named by their account number (digits) in the path.

**Card data.** Cards are tokenized by the processor in the member's browser (Stripe.js);
this API receives only the resulting PaymentMethod id (`pm_...`). It keeps and returns
only the processor's id, the kind, brand, last four digits and expiry: never a card
number or security code.

**Idempotent adds.** Adding a payment method or phone number already on file for the
account answers 200 with the stored item (a new one is 201), so a retried request is
harmless. A payment method on file for another account is a 409.

**Errors** are JSON: `{"error": {"code": "...", "message": "..."}}`; `code` is stable,
`message` is for people. Nothing is half-written: a request that fails changes nothing
(a processor customer created for the account on the way is kept and reused).
"""

_ACCOUNT = {
    "name": "account",
    "in": "path",
    "required": True,
    "description": "The account number, as in the billing system.",
    "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"},
}


def _id(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The id of the {what}, as listed.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    }


_COMMON = {
    "401": _ref("responses", "Unauthorized"),
    "429": _ref("responses", "TooManyRequests"),
    "500": _ref("responses", "InternalError"),
}

_BODY_ERRORS = {
    "400": _ref("responses", "BadRequest"),
    "413": _ref("responses", "TooLarge"),
}

_PROCESSOR_ERRORS = {
    "502": _ref("responses", "ProcessorError"),
    "503": _ref("responses", "ProcessorUnavailable"),
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "SecurePay portal API",
        "version": "1.0.0",
        "description": _DESCRIPTION,
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"portalToken": []}],
    "tags": [
        {"name": "payment methods", "description": "Stored cards and bank accounts."},
        {"name": "phones", "description": "Phone numbers used by Call Capture."},
        {"name": "meta", "description": "This document."},
    ],
    "paths": {
        "/accounts/{account}/payment-methods": {
            "parameters": [_ACCOUNT],
            "get": {
                "operationId": "listPaymentMethods",
                "tags": ["payment methods"],
                "summary": "The account's stored payment methods, oldest first",
                "responses": {
                    "200": _json(_schema("PaymentMethodList"), "The stored methods."),
                    "404": _error("No such account.", ["account_not_found", "not_found"]),
                    **_COMMON,
                },
            },
            "post": {
                "operationId": "addPaymentMethod",
                "tags": ["payment methods"],
                "summary": "Save a processor payment method on the account",
                "description": (
                    "Saves the PaymentMethod on the account's processor customer (created "
                    "on first use) through a SetupIntent and stores its brand, last four and "
                    "expiry. For a bank account, `mandate` says how the member authorized "
                    "debits; a bank account saved without it is not offered by phone. "
                    "Idempotent: a method already on file for this account answers 200."
                ),
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _schema("NewPaymentMethod")}},
                },
                "responses": {
                    "200": _json(_schema("PaymentMethod"), "Already on file for this account."),
                    "201": _json(_schema("PaymentMethod"), "Saved."),
                    **_BODY_ERRORS,
                    "404": _error("No such account.", ["account_not_found", "not_found"]),
                    "409": _error(
                        "On file for another account, or the account holds the most methods "
                        "allowed (7, the keys the phone menu offers).",
                        ["payment_method_in_use", "too_many_payment_methods"],
                    ),
                    "422": _error(
                        "The processor does not know the method, it cannot be saved, or it "
                        "was declined when saving.",
                        ["invalid_payment_method", "payment_method_declined"],
                    ),
                    **_PROCESSOR_ERRORS,
                    **_COMMON,
                },
            },
        },
        "/accounts/{account}/payment-methods/{method_id}": {
            "parameters": [_ACCOUNT, _id("method_id", "payment method")],
            "delete": {
                "operationId": "deletePaymentMethod",
                "tags": ["payment methods"],
                "summary": "Remove a stored payment method",
                "description": "Detaches it at the processor, then removes it from the store.",
                "responses": {
                    "204": {"description": "Removed."},
                    "404": _error(
                        "No such account, or no such method on this account.",
                        ["account_not_found", "payment_method_not_found", "not_found"],
                    ),
                    **_PROCESSOR_ERRORS,
                    **_COMMON,
                },
            },
        },
        "/accounts/{account}/phones": {
            "parameters": [_ACCOUNT],
            "get": {
                "operationId": "listPhones",
                "tags": ["phones"],
                "summary": "The account's phone numbers, oldest first",
                "responses": {
                    "200": _json(_schema("PhoneList"), "The phone numbers."),
                    "404": _error("No such account.", ["account_not_found", "not_found"]),
                    **_COMMON,
                },
            },
            "post": {
                "operationId": "addPhone",
                "tags": ["phones"],
                "summary": "Add a phone number to the account",
                "description": (
                    "Any common US format is accepted and stored in E.164. Idempotent: a number "
                    "already on file for this account answers 200. A number may be on several "
                    "accounts."
                ),
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _schema("NewPhone")}},
                },
                "responses": {
                    "200": _json(_schema("Phone"), "Already on file for this account."),
                    "201": _json(_schema("Phone"), "Added."),
                    **_BODY_ERRORS,
                    "404": _error("No such account.", ["account_not_found", "not_found"]),
                    "422": _error(
                        "Not a usable phone number; the message says why.", ["invalid_phone_number"]
                    ),
                    **_COMMON,
                },
            },
        },
        "/accounts/{account}/phones/{phone_id}": {
            "parameters": [_ACCOUNT, _id("phone_id", "phone number")],
            "delete": {
                "operationId": "deletePhone",
                "tags": ["phones"],
                "summary": "Remove a phone number from the account",
                "responses": {
                    "204": {"description": "Removed."},
                    "404": _error(
                        "No such account, or no such phone number on this account.",
                        ["account_not_found", "phone_not_found", "not_found"],
                    ),
                    **_COMMON,
                },
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApiDocument",
                "tags": ["meta"],
                "summary": "This document",
                "responses": {
                    "200": _json({"type": "object"}, "The OpenAPI document."),
                    "404": _error("The API is off.", ["not_found"]),
                    **_COMMON,
                },
            },
        },
    },
    "components": {
        "securitySchemes": {
            "portalToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "The value of SECUREPAY_PORTAL_TOKEN.",
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "additionalProperties": False,
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "additionalProperties": False,
                        "properties": {
                            "code": {"type": "string", "description": "Stable, for programs."},
                            "message": {"type": "string", "description": "What is wrong, for people."},
                        },
                    }
                },
            },
            "CreatedAt": {
                "type": "string",
                "format": "date-time",
                "description": "When it was put on file (UTC).",
            },
            "PaymentMethod": {
                "type": "object",
                "required": [
                    "id",
                    "kind",
                    "brand",
                    "last4",
                    "exp_month",
                    "exp_year",
                    "created_via",
                    "created_at",
                ],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "kind": {"enum": ["card", "bank"]},
                    "brand": {
                        "type": "string",
                        "description": "Card brand (visa, mastercard, ...) or the bank's name.",
                    },
                    "last4": {"type": "string", "pattern": "^[0-9]{4}$"},
                    "exp_month": {"type": ["integer", "null"], "minimum": 1, "maximum": 12},
                    "exp_year": {"type": ["integer", "null"], "description": "null for a bank account."},
                    "created_via": {"enum": ["ivr", "portal"]},
                    "created_at": _schema("CreatedAt"),
                },
            },
            "PaymentMethodList": {
                "type": "object",
                "required": ["payment_methods"],
                "additionalProperties": False,
                "properties": {
                    "payment_methods": {"type": "array", "items": _schema("PaymentMethod")},
                },
            },
            "NewPaymentMethod": {
                "type": "object",
                "required": ["payment_method"],
                "additionalProperties": False,
                "properties": {
                    "payment_method": {
                        "type": "string",
                        "pattern": "^pm_[A-Za-z0-9_]{1,61}$",
                        "description": "A PaymentMethod id from the processor (Stripe.js).",
                    },
                    "mandate": {
                        "type": "object",
                        "required": ["accepted_at"],
                        "additionalProperties": False,
                        "description": "A bank account's debit authorization, as the member gave it.",
                        "properties": {
                            "accepted_at": {
                                "type": "integer", "minimum": 0, "maximum": 32503680000,
                                "description": "When the member accepted, in Unix seconds.",
                            },
                            "online": {
                                "type": "object",
                                "required": ["ip_address", "user_agent"],
                                "additionalProperties": False,
                                "description": "Accepted in a browser; without it, accepted offline.",
                                "properties": {
                                    "ip_address": {"type": "string", "maxLength": 500, "pattern": _PRINTABLE},
                                    "user_agent": {"type": "string", "maxLength": 500, "pattern": _PRINTABLE},
                                },
                            },
                        },
                    },
                },
            },
            "Phone": {
                "type": "object",
                "required": ["id", "number", "created_via", "created_at"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "number": {
                        "type": "string",
                        "pattern": "^\\+[1-9][0-9]{6,14}$",
                        "description": "E.164.",
                    },
                    "created_via": {"enum": ["import", "portal", "ivr"]},
                    "created_at": _schema("CreatedAt"),
                },
            },
            "PhoneList": {
                "type": "object",
                "required": ["phones"],
                "additionalProperties": False,
                "properties": {"phones": {"type": "array", "items": _schema("Phone")}},
            },
            "NewPhone": {
                "type": "object",
                "required": ["number"],
                "additionalProperties": False,
                "properties": {
                    "number": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 40,
                        "examples": ["(202) 555-0143", "+1 202 555 0143"],
                    }
                },
            },
        },
        "responses": {
            "BadRequest": _error(
                "The body is not JSON, not an object, or lacks, adds or mistypes a field.",
                ["unsupported_content_type", "malformed_json", "invalid_body"],
            ),
            "Unauthorized": {
                **_error("Missing or wrong bearer token.", ["unauthorized"]),
                "headers": {
                    "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge."}
                },
            },
            "TooLarge": _error("The body is larger than the server accepts.", ["body_too_large"]),
            "TooManyRequests": {
                **_error(
                    "Over the request budget of this client or token; nothing was done.", ["rate_limited"]
                ),
                "headers": {
                    "Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}
                },
            },
            "ProcessorError": _error(
                "The processor refused the request or did not answer; nothing was changed.",
                ["processor_error", "processor_no_answer"],
            ),
            "ProcessorUnavailable": {
                **_error(
                    "Payments are not configured, or the processor cannot be reached; nothing was changed.",
                    ["payments_disabled", "processor_unavailable"],
                ),
                "headers": {
                    "Retry-After": {
                        "schema": {"type": "string"},
                        "description": "Seconds to wait, when the processor is unreachable.",
                    }
                },
            },
            "InternalError": _error("An unexpected failure; logged.", ["internal_error"]),
        },
    },
}


# -- Auto Pay (issue 10) ----------------------------------------------------------------

_AUTOPAY_PATH = {
    "parameters": [_ACCOUNT],
    "get": {
        "operationId": "getAutopay",
        "tags": ["auto pay"],
        "summary": "The account's Auto Pay enrollment (active or suspended)",
        "responses": {
            "200": _json(_schema("Autopay"), "The enrollment."),
            "404": _error(
                "No such account, or not enrolled.", ["account_not_found", "autopay_not_found", "not_found"]
            ),
            **_COMMON,
        },
    },
    "put": {
        "operationId": "putAutopay",
        "tags": ["auto pay"],
        "summary": "Enroll in Auto Pay, or change its payment method",
        "description": (
            "The member agrees to the terms of `terms_version` (the version in force): the full "
            "balance of each bill is charged on its due date to the stored method "
            "`payment_method_id`, starting with the first bill due after the current due date "
            "(a bill already issued is not covered: `first_due_after`). The phone and the "
            "portal share the enrollment. The member is sent the terms in writing. The same "
            "method again answers 200 and changes nothing."
        ),
        "requestBody": {"required": True, "content": {JSON: {"schema": _schema("AutopayRequest")}}},
        "responses": {
            "200": _json(_schema("Autopay"), "The method changed (or was already this one)."),
            "201": _json(_schema("Autopay"), "Enrolled."),
            **_BODY_ERRORS,
            "404": _error("No such account.", ["account_not_found", "not_found"]),
            "422": _error(
                "The terms version is not the one in force, no such stored method on the account, "
                "or the card has expired.",
                ["terms_version_not_current", "payment_method_not_found", "payment_method_expired"],
            ),
            **_COMMON,
        },
    },
    "delete": {
        "operationId": "deleteAutopay",
        "tags": ["auto pay"],
        "summary": "Cancel Auto Pay",
        "description": "No further bill is drafted; what was agreed stays on record.",
        "responses": {
            "204": {"description": "Cancelled."},
            "404": _error(
                "No such account, or not enrolled.", ["account_not_found", "autopay_not_found", "not_found"]
            ),
            **_COMMON,
        },
    },
}

_AUTOPAY_SCHEMAS: dict[str, Any] = {
    "Autopay": {
        "type": "object",
        "required": [
            "status", "status_reason", "payment_method_id", "method", "terms_version", "agreed_at",
            "channel", "first_due_after",
        ],
        "additionalProperties": False,
        "properties": {
            "status": {"enum": ["active", "suspended"]},
            "status_reason": {
                "type": ["string", "null"],
                "description": "Why suspended: method_removed, method_unusable, declines.",
            },
            "payment_method_id": {
                "type": ["integer", "null"],
                "description": "The stored method; null once it was removed (then suspended).",
            },
            "method": {
                "type": "object",
                "required": ["kind", "brand", "last4"],
                "additionalProperties": False,
                "properties": {
                    "kind": {"enum": ["card", "bank"]},
                    "brand": {"type": "string"},
                    "last4": {"type": "string", "pattern": "^[0-9]{4}$"},
                },
            },
            "terms_version": {"type": "string"},
            "agreed_at": {"type": "string", "format": "date-time"},
            "channel": {"enum": ["ivr", "portal", "staff"]},
            "first_due_after": {
                "type": "string",
                "format": "date",
                "description": "Bills due after this day are drafted.",
            },
        },
    },
    "AutopayRequest": {
        "type": "object",
        "required": ["payment_method_id", "terms_version"],
        "additionalProperties": False,
        "properties": {
            "payment_method_id": {"type": "integer", "minimum": 1, "maximum": 2147483647},
            "terms_version": {"type": "string", "minLength": 1, "maxLength": 20},
        },
    },
}

_DOCUMENT["paths"]["/accounts/{account}/autopay"] = _AUTOPAY_PATH
_DOCUMENT["components"]["schemas"].update(_AUTOPAY_SCHEMAS)
_DOCUMENT["tags"].insert(2, {"name": "auto pay", "description": "Auto Pay: each bill paid on its due date."})


def document() -> dict[str, Any]:
    """A copy of the document (callers may change theirs)."""
    return copy.deepcopy(_DOCUMENT)
