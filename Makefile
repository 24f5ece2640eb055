# tinydeploy — `make demo` (set up, then convert + verify the shipped example) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
# Debian packages: host compiler, then per target family (targets/registry.py) compiler, C library, QEMU
APT_PACKAGES := gcc g++ make cmake gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm \
	gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc \
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
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
