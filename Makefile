# The two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Where `make run` listens: `make run PORT=8001`, or BIND=0.0.0.0:8000 for every interface.
PORT ?= 8000
BIND ?= 127.0.0.1:$(PORT)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test setup lint bench-render bench-inflight bench-inflight-scale bench-throttle bench-memory bench-i2v bench-pipelet bench-webhooks bench-hooks bench-hooks-pipelet bench-hot-read bench-health-check bench-enqueue bench-gauntlet clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

## Set up everything and start web + worker + sweeper on http://$(BIND)
run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py demouser
	$(PY) manage.py serve --bind $(BIND)

## Run the whole test suite (DATABASE_URL picks the database; SQLite by default)
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-render: setup
	$(PY) bench/bench_render.py

bench-inflight: setup
	$(PY) bench/bench_inflight.py

bench-inflight-scale: setup
	$(PY) bench/bench_inflight.py --scale

bench-throttle: setup
	$(PY) bench/bench_throttle.py

bench-memory: setup
	$(PY) bench/bench_memory.py

bench-i2v: setup
	$(PY) bench/bench_i2v.py

bench-pipelet: setup
	$(PY) bench/bench_pipelet_memory.py

bench-webhooks: setup
	$(PY) bench/bench_webhooks.py

bench-hooks: setup
	$(PY) bench/bench_provider_webhooks.py

bench-hooks-pipelet: setup
	$(PY) bench/bench_provider_webhooks.py --provider pipelet

## Kill workers, poison a job, restart Redis and PostgreSQL, cut S3; check nothing is lost (SEED=n repeats a run)
bench-gauntlet: setup
	$(PY) bench/bench_gauntlet.py $(if $(SEED),--seed $(SEED))

# SQLite, then PostgreSQL (i2v_perf on 127.0.0.1:5432) with the Redis cache (127.0.0.1:6379/7).
bench-hot-read: setup
	$(PY) bench/bench_hot_read.py

# What checking a kept PostgreSQL connection costs a poll (i2v_bench_health on 127.0.0.1:5432).
bench-health-check: setup
	$(PY) bench/bench_health_check.py

# The ORM broker at three polls (Q_POLL), then the Redis broker (127.0.0.1:6379/8).
bench-enqueue: setup
	$(PY) bench/bench_enqueue.py

clean:
	rm -rf $(VENV) var
