# seqlab — two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench-trainer gpu-check clean venv chromium sound speech docs wheel

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

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# The `seqlab viz` page is tested in headless Chromium (Debian's package). As root it is
# installed here; otherwise the browser test fails and says what to install
# (SEQLAB_SKIP_BROWSER=1 skips it on purpose).
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
	  (echo "installing Debian's chromium for the browser test ..." && apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null)

# Audio for folk tunes (`seqlab analyze tunes --render OUT --wav`): Debian's fluidsynth and a
# General MIDI soundfont, installed as root; otherwise the command says what to install.
sound:
	@command -v fluidsynth >/dev/null && [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || [ "$$(id -u)" != 0 ] || \
	  (echo "installing Debian's fluidsynth and fluid-soundfont-gm ..." && apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fluidsynth fluid-soundfont-gm >/dev/null)

# Speech for WaveNet (`seqlab data fetch speech`): Debian's espeak-ng reads the sentences.
speech:
	@command -v espeak-ng >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (echo "installing Debian's espeak-ng ..." && apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench-trainer: $(STAMP)
	$(BIN)/seqlab bench trainer --out benchmarks/trainer_speed

# On a machine with an NVIDIA GPU (at most ~8 minutes): cuDNN speed of every recurrent path,
# bf16 and torch.compile training speed, two full-profile Bai et al. cells -> benchmarks/gpu/.
# `seqlab bench gpu-check --dry-run` runs the same script on the CPU with toy sizes.
gpu-check: $(STAMP)
	$(BIN)/seqlab bench gpu-check --out benchmarks/gpu

# The Python API's reference, from the docstrings (pdoc): docs/api/index.html
docs: $(STAMP)
	$(BIN)/python -m pdoc seqlab.api seqlab.config seqlab.export -o docs/api --docformat google

# A wheel and an sdist in dist/ (the C++ kernel's source and the viz page ship inside)
wheel: $(STAMP)
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) runs build dist docs/api src/*.egg-info
