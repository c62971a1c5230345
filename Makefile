# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA_DIR ?= $(firstword $(wildcard ../shared/data) data)
DEMO_OUT ?= artifacts/demo
DEMO_EXPERIMENT ?= artifacts/demo-experiment
DEMO_EPOCHS ?= 6

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export SHINE_DATA_DIR ?= $(abspath $(DATA_DIR))

.PHONY: install demo test test-fast bench evidence evidence-bow evidence-lexical clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/shine build-negatives --dataset charades-cg --split train --backend random --out $(DEMO_OUT)
	$(BIN)/shine inspect $(DEMO_OUT) --sample 3
	@# the main job at a small scale: negatives -> text features -> QD-DETR with and without SHINE -> results page
	$(BIN)/shine experiment --preset synthetic --out $(DEMO_EXPERIMENT) --epochs $(DEMO_EPOCHS)

test: $(STAMP)
	$(BIN)/python -m pytest pipeline trainer shine tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" pipeline trainer shine tests

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "# $$f" >&2; $(BIN)/python $$f; done

# SHINE vs baseline on the synthetic set (noun-shortcut mode), 3 seeds, about 20 min on 2 CPU cores:
# artifacts/evidence/. evidence-bow: the same on the default bag-of-words mode (about 22 min).
evidence: $(STAMP)
	$(BIN)/python scripts/evidence.py --mode noun-shortcut --out artifacts/evidence --fresh
	$(BIN)/python scripts/probe_negatives.py --work artifacts/evidence/work --out artifacts/evidence/probe.md

evidence-bow: $(STAMP)
	$(BIN)/python scripts/evidence.py --mode bag-of-words --out artifacts/evidence-bow --fresh
	$(BIN)/python scripts/probe_negatives.py --work artifacts/evidence-bow/work --out artifacts/evidence-bow/probe.md

# SHINE with the lexical backend's negatives vs the random backend's (noun-shortcut mode, 3 seeds, 20 epochs;
# reuses finished runs): artifacts/evidence-lexical/, with `shine quality` of seed 0's two negatives runs
evidence-lexical: $(STAMP)
	$(BIN)/python scripts/evidence.py --mode noun-shortcut --variants baseline shine-random shine-lexical --out artifacts/evidence-lexical

clean:
	rm -rf $(VENV) .pytest_cache .prefect
