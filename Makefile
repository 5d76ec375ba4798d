# `make demo` and `make test` set everything up themselves: a virtual environment in .venv,
# torch (the release pinned below, which pip takes from the local wheel cache when it has it),
# then stylelift and its dependencies, then the bundled face generator's weights: the
# `random-face` wheel, installed without its own dependencies (its code is never imported).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.stylelift-installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps random-face==2021.7.21.1
	touch $(STAMP)

DEMO_STEPS ?= 150

demo: $(STAMP)
	$(VENV)/bin/stylelift generate --seeds 0-7 --trunc 0.7 --outdir out/demo/generated
	$(VENV)/bin/stylelift project examples/astronaut.png --steps $(DEMO_STEPS) --paste-back --outdir out/demo/projected --overwrite
	@echo "faces in out/demo/generated/ (grid.png), the projection in out/demo/projected/"

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) out build *.egg-info
