# tinydeploy — `make demo` (set up, then convert + verify the shipped example) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
APT_PACKAGES := gcc make
PYTEST_ARGS ?=

.PHONY: setup demo test clean
setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(APT_PACKAGES)"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/tinydeploy inspect examples/mnist/mnist_cnn_int8.tflite
	$(VENV)/bin/tinydeploy convert examples/mnist/mnist_cnn_int8.tflite --target host -o out/mnist
	$(VENV)/bin/tinydeploy verify out/mnist --target host --inputs examples/mnist/digits_int8.npy
	$(PY) examples/mnist/show_predictions.py out/mnist

test: setup
	$(VENV)/bin/pytest -n 2 -q $(PYTEST_ARGS)

clean:
	rm -rf out build
