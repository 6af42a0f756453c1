"""``make bench``: SecurePay under gunicorn, PostgreSQL and localstripe, measured against its targets.

Run ``python -m bench.run --help``; ``bench/README.md`` says what is measured and how.
"""
