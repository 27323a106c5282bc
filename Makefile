# One entry point for every chore; CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The hot adapter modules (line splitting, JSON reader, mapping engine), compiled with
# mypyc beside their sources (adapters/native.py): the same code, ~1.5-2x faster
# mappings. Rebuilt whenever a source changes; a stale build is never run (the
# package falls back to the sources).
NATIVE_SRC := adapters/readers/_source.py adapters/readers/json_reader.py \
              adapters/mapping/normalizers.py adapters/mapping/formats.py adapters/mapping/engine.py
NATIVE     := $(VENV)/.native-stamp

.PHONY: run test check lint typecheck bench fuzz clean native

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

# Without a C compiler the sources run (slower) and the next make tries again; in CI
# a failed build fails.
$(NATIVE): $(STAMP) $(NATIVE_SRC)
	@echo "mypyc: compiling the hot adapter modules (about a minute)"
	@if $(VENV)/bin/mypyc $(NATIVE_SRC) > $(VENV)/mypyc.log 2>&1; then \
	    touch $(NATIVE_SRC:.py=.*.so) $(NATIVE); rm -rf build; \
	elif [ "$$CI" = true ]; then \
	    tail -40 $(VENV)/mypyc.log; rm -rf build; exit 1; \
	else \
	    echo "mypyc could not build them (see $(VENV)/mypyc.log): the sources run, slower."; \
	    rm -rf build; \
	fi

native: $(NATIVE)

run: $(NATIVE)
	$(PY) -m gateway.demo

test: $(NATIVE)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy .

check: lint typecheck test

bench: $(NATIVE)
	$(PY) bench/crypto_bench.py
	$(PY) bench/adapter_bench.py

# Longer fuzzing of the envelope parser (hypothesis); FUZZ_EXAMPLES=100000 make fuzz
fuzz: $(NATIVE)
	GATEWAY_FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-20000} $(PY) -m pytest -q -p no:cacheprovider tests/crypto/test_fuzz.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var build
	rm -f $(NATIVE_SRC:.py=.*.so) *__mypyc.*.so
