# lbgen: `make demo` (a real blue-green cutover on Docker) and `make test` (the whole suite).
PYTHON ?= python3
PROXY ?= nginx
PYTEST_ARGS ?=

.PHONY: test unit integration typecheck demo images bench install

install:
	$(PYTHON) -m pip install -q -e '.[test]'

images:
	bash tests/images/build.sh

test: install images
	$(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

typecheck: install
	$(PYTHON) -m mypy

unit: install
	$(PYTHON) -m pytest -q -m 'not integration' $(PYTEST_ARGS)

integration: install images
	$(PYTHON) -m pytest -q -m integration $(PYTEST_ARGS)

demo: install images
	PROXY=$(PROXY) bash examples/demo.sh

bench: install images
	$(PYTHON) bench/render_bench.py
	$(PYTHON) bench/shape_bench.py
	$(PYTHON) bench/startup_bench.py
	$(PYTHON) bench/apply_bench.py
	$(PYTHON) bench/cutover.py --proxy nginx
	$(PYTHON) bench/cutover.py --proxy haproxy
