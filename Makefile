# The two set-up commands of the README are `make demo` and `make test`; each installs
# what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint bench bench-count bench-chain bench-scale clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/securepay demo

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check ivr payments callcapture db tests bench
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench.run $(BENCH_ARGS)

# Instructions per webhook under valgrind's callgrind, statements and round trips per
# kind (needs valgrind and a C compiler: apt-get install valgrind gcc). A few minutes.
bench-count: install
	$(PY) -m bench.count $(BENCH_COUNT_ARGS)

# The audit chain at line scale: events/s with 16, 64, 256 writers; the lock's share of a
# webhook at 50 and 200 concurrent calls (starts a PostgreSQL of its own for 256 writers).
bench-chain: install
	$(PY) -m bench.chain $(BENCH_CHAIN_ARGS)

# Two app servers (each a gunicorn with gunicorn.conf.py, in a network namespace of its own
# as root, else on two ports of 127.0.0.1) against one PostgreSQL: errors, money, the audit
# chain, and calls per second of the pair over one alone. About 4 minutes on 2 busy cores;
# BENCH_SCALE_ARGS="--quick" 1 to 2.
bench-scale: install
	$(PY) -m bench.scale $(BENCH_SCALE_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
