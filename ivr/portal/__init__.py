"""The portal API (contract section 3): JSON under ``/api/v1``, behind a bearer token.

``bp`` is registered by ``create_app``. Modules: ``auth`` (the token gate), ``errors``
(the one JSON error shape), ``bodies`` (request validation), ``wallet`` (saving and
removing methods at the processor and on file), ``routes`` (the views) and ``openapi``
(the document served at ``/api/v1/openapi.json``).
"""

from ivr.portal import autopay as _autopay  # noqa: F401 -- registers the Auto Pay routes on bp
from ivr.portal.routes import bp

__all__ = ["bp"]
