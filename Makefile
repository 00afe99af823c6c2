# seqlab — two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench-trainer clean venv

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Fetch Shakespeare, train a small character LSTM (~5 min on 2 CPU cores),
# print validation bits per character and a 300-character sample.
demo: $(STAMP)
	$(BIN)/seqlab data fetch shakespeare
	$(BIN)/seqlab train --config configs/demo.toml --out runs/demo --overwrite
	$(BIN)/seqlab eval runs/demo --split valid
	$(BIN)/seqlab sample runs/demo --prime "ROMEO." --length 300 --temperature 0.8 --seed 1

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench-trainer: $(STAMP)
	$(BIN)/seqlab bench trainer --out benchmarks/trainer_speed

clean:
	rm -rf $(VENV) runs build src/*.egg-info
