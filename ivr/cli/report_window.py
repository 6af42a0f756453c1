"""The reporting commands' ``--since``/``--until`` window: see ``ivr.report_window``.

It lives outside ``ivr.cli`` so that ``payments.cli`` can import it without importing
the ``securepay`` group first (the group imports ``payments.cli``: a cycle that broke
``import payments.cli`` on its own).
"""

from ivr.report_window import DATE, day_window, fail, parse_day, window_options

__all__ = ["DATE", "day_window", "fail", "parse_day", "window_options"]
