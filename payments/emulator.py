"""localstripe, the Stripe API emulator, run in-process for the demo and the tests.

``LocalStripe`` serves localstripe's own request handlers (the real emulator, not a fake
of ours) from a background thread with its own asyncio loop, on ``127.0.0.1`` only.
Two things differ from localstripe's stock ``localstripe`` command, on purpose:

- the stock command binds every interface (``::``); this binds the loopback address;
- the stock command loads ``/tmp/localstripe.pickle`` at start and rewrites it after
  every change, a world-readable file holding the raw test card numbers it was sent.
  Here nothing is loaded or written: the store lives in memory and dies with the process.

localstripe keeps its objects in one module-level store, so every ``LocalStripe`` of a
process shares the same data, and ``flush()`` empties it for all of them.

Usage::

    with LocalStripe() as emulator:
        client = build_stripe_client("sk_test_...", emulator.base_url)
"""

from __future__ import annotations

import asyncio
import http.client
import inspect
import secrets
import socket
import string
import threading
from types import TracebackType
from typing import Any

from aiohttp import web

LOOPBACK = "127.0.0.1"
_START_TIMEOUT_SECONDS = 10.0
_SETTLE_TURNS = 5


class EmulatorError(RuntimeError):
    """The emulator could not start, or was used while not running."""


def _no_disk_write() -> None:
    """Stands in for localstripe's ``Store.dump_to_disk``."""


def _localstripe_app() -> web.Application:
    """A fresh aiohttp application carrying localstripe's routes and middlewares, minus
    the middleware that pickles the store to disk after each request.

    A fresh one per server because an aiohttp application binds to the first event loop
    that runs it, and each ``LocalStripe`` has its own loop.
    """
    from localstripe import resources, server

    # The store also writes itself to disk on every item set or deleted: an instance
    # attribute shadows the class's method for those calls.
    resources.store.dump_to_disk = _no_disk_write
    _accept_allowed_payment_method_types(resources.PaymentIntent)
    _list_payment_intents_by_customer_and_created(resources.PaymentIntent)
    _confirm_setup_intents_on_creation(resources.SetupIntent)
    resources.random_id = _random_id

    stock: web.Application = server.app
    app = web.Application(middlewares=[m for m in stock.middlewares if m is not server.save_store_middleware])
    app.on_response_prepare.append(server.add_cors_headers)
    for route in stock.router.routes():
        # In registration order: localstripe's extra routes (``/invoices/upcoming``)
        # must come before the generic ``/{id}`` ones.
        if route.resource is None:
            continue
        app.router.add_route(route.method, route.resource.canonical, _awaitable(route.handler))
    return app


def _accept_allowed_payment_method_types(intent_class: Any) -> None:
    """Teach localstripe the PaymentIntent parameters of the API version stripe-python 16
    speaks, which it predates and would refuse:

    - ``allowed_payment_method_types`` (which replaced ``payment_method_types``):
      localstripe charges whatever method it is given, so it is dropped;
    - ``setup_future_usage``: as Stripe does, the method is attached to the customer
      when the payment succeeds (https://docs.stripe.com/payments/save-during-payment);
    - ``error_on_requires_action``, ``mandate``: dropped; a card that needs 3-D Secure
      is left in ``requires_action``, which the adapter treats as Stripe's error.
    """
    if getattr(intent_class._api_create, "_securepay_shim", False):
        return
    create = intent_class._api_create  # a bound classmethod

    def api_create(**data: Any) -> Any:
        from localstripe.resources import PaymentMethod

        data.pop("allowed_payment_method_types", None)
        data.pop("error_on_requires_action", None)
        data.pop("mandate", None)
        future_usage = data.pop("setup_future_usage", None)
        intent = create(**data)
        if future_usage and intent.customer and intent.status in ("succeeded", "processing"):
            PaymentMethod._api_retrieve(intent.payment_method).customer = intent.customer
        return intent

    api_create._securepay_shim = True  # type: ignore[attr-defined]
    intent_class._api_create = staticmethod(api_create)


def _list_payment_intents_by_customer_and_created(intent_class: Any) -> None:
    """Teach localstripe the ``customer`` and ``created`` filters Stripe's list of
    PaymentIntents takes (https://docs.stripe.com/api/payment_intents/list), which the
    in-call lookup sends; localstripe refuses every list filter ("Unexpected customer").
    Newest first, as Stripe lists."""
    if getattr(intent_class._api_list_all, "_securepay_shim", False):
        return
    list_all = intent_class._api_list_all  # a bound classmethod

    def api_list_all(url: str, customer: Any = None, created: Any = None, **kwargs: Any) -> Any:
        bounds = created if isinstance(created, dict) else ({} if created is None else {"eq": created})
        for name in bounds:
            if name not in ("gt", "gte", "lt", "lte", "eq"):
                from localstripe.errors import UserError

                raise UserError(400, f"Unexpected created[{name}]")
        found = list_all(url, **kwargs)

        def kept(intent: Any) -> bool:
            if customer is not None and intent.customer != customer:
                return False
            created_at = int(intent.created)
            checks = {
                "gt": lambda v: created_at > v, "gte": lambda v: created_at >= v,
                "lt": lambda v: created_at < v, "lte": lambda v: created_at <= v,
                "eq": lambda v: created_at == v,
            }
            return all(checks[name](int(value)) for name, value in bounds.items())

        # Newest first; within one second, the later one first.
        ordered = sorted(enumerate(i for i in found._list if kept(i)), key=lambda p: (p[1].created, p[0]))
        found._list = [intent for _, intent in reversed(ordered)]
        return found

    api_list_all._securepay_shim = True  # type: ignore[attr-defined]
    intent_class._api_list_all = staticmethod(api_list_all)


def _random_id(length: int) -> str:
    """Object ids from the system's randomness. localstripe draws them from the ``random``
    module, which a test tool may seed (hypothesis does, per example): two objects then
    get one id and the second is refused with a 409 Stripe would never send."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _confirm_setup_intents_on_creation(setup_class: Any) -> None:
    """Teach localstripe to create and confirm a SetupIntent in one request, as Stripe
    does with ``payment_method`` and ``confirm=true``, and to attach the method to the
    customer when it succeeds (https://docs.stripe.com/api/setup_intents/create).
    ``allowed_payment_method_types`` and ``mandate_data`` are dropped: localstripe has
    no bank accounts and no mandates (tests script those answers)."""
    if getattr(setup_class._api_create, "_securepay_shim", False):
        return
    create = setup_class._api_create  # a bound classmethod

    def api_create(**data: Any) -> Any:
        from localstripe.resources import PaymentMethod

        data.pop("allowed_payment_method_types", None)
        data.pop("mandate_data", None)
        payment_method = data.pop("payment_method", None)
        confirm = str(data.pop("confirm", "false")).lower() == "true"
        setup = create(**data)
        if payment_method is not None and confirm:
            setup_class._api_confirm(setup.id, payment_method=payment_method)
            if setup.status == "succeeded" and setup.customer:
                PaymentMethod._api_retrieve(payment_method).customer = setup.customer
        elif payment_method is not None:
            setup.payment_method = payment_method
            setup.status = "requires_confirmation"
        return setup

    api_create._securepay_shim = True  # type: ignore[attr-defined]
    setup_class._api_create = staticmethod(api_create)


def _awaitable(handler: Any) -> Any:
    """localstripe's GET and DELETE handlers are plain functions, which aiohttp deprecates
    for new routes: give them a coroutine wrapper."""
    if inspect.iscoroutinefunction(handler):
        return handler

    async def handle(request: web.Request) -> Any:
        return handler(request)

    return handle


class LocalStripe:
    """A localstripe server on ``127.0.0.1`` (or ``host``); ``port=0`` picks a free port."""

    def __init__(self, port: int = 0, *, host: str = LOOPBACK) -> None:
        self._requested_port = port
        self._host = host
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> LocalStripe:
        if self._thread is not None:
            raise EmulatorError("LocalStripe is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self._host, self._requested_port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"localstripe-{self._port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_SECONDS):
            raise EmulatorError("localstripe did not start in time")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise EmulatorError("localstripe failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Close the listening socket and open connections, end the thread. Idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = None
        self._loop = None
        self._stopping = None
        self._port = None

    def __enter__(self) -> LocalStripe:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- use ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None or self._thread is None:
            raise EmulatorError("LocalStripe is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """The API base to give the Stripe client, e.g. ``http://127.0.0.1:53117``."""
        return f"http://{self._host}:{self.port}"

    def flush(self) -> None:
        """Forget every object (``DELETE /_config/data``)."""
        conn = http.client.HTTPConnection(self._host, self.port, timeout=5)
        try:
            conn.request("DELETE", "/_config/data")
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise EmulatorError(f"localstripe flush answered HTTP {response.status}")

    def __repr__(self) -> str:
        state = f"port={self._port}" if self._thread is not None else "stopped"
        return f"<LocalStripe {state}>"

    # -- the server thread -------------------------------------------------------------

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        finally:
            try:
                _cancel_pending(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stopping = asyncio.Event()
        runner: web.AppRunner | None = None
        try:
            runner = web.AppRunner(_localstripe_app(), access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            site = web.SockSite(runner, sock)
            await site.start()
        except BaseException as exc:
            self._startup_error = exc
            if runner is not None:
                await runner.cleanup()
            sock.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            # A connection accepted in the same loop turn as the stop request needs a few
            # more turns to get its transport. Closing the server before that makes
            # CPython 3.11 drop the half-made transport with its socket open (a
            # ResourceWarning); after it, the cleanup closes that connection like any.
            for _ in range(_SETTLE_TURNS):
                await asyncio.sleep(0)
            await runner.cleanup()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left: localstripe's webhook sends (they sleep a second first), and
    connections accepted while the server was closing."""
    pending: set[asyncio.Task[Any]] = asyncio.all_tasks(loop)
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    # A connection accepted during shutdown is closed by its cancelled task through a
    # callback: run the loop once more so that callback closes the socket.
    loop.run_until_complete(asyncio.sleep(0))
