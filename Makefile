# Two commands work on a fresh machine with only python3: `make demo` and `make test`.
# Each creates .venv/ (once) and installs hwsim with its dev extras into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-record validate clean figures

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## compare LLaMA-2-7B decoding on h100-sxm, tpu-v4 and wse2
	$(BIN)/hwsim compare

lint: $(STAMP)
	$(BIN)/ruff check hwsim tests bench
	$(BIN)/mypy

test: $(STAMP) lint  ## lint, type-check, then run the whole test suite
	$(BIN)/python -m pytest

bench: $(STAMP)  ## simulations per second (see bench/README.md); writes results/bench/ (untracked)
	$(BIN)/python bench/bench_simulate.py
	$(BIN)/python bench/bench_sweep.py
	$(BIN)/python bench/bench_serve.py --record results/bench/results_serve.json

bench-record: $(STAMP)  ## the same, updating the recorded bench/results*.json (commit them deliberately)
	$(BIN)/python bench/bench_simulate.py --record
	$(BIN)/python bench/bench_sweep.py --record
	$(BIN)/python bench/bench_serve.py --record bench/results_serve.json

figures: $(STAMP)  ## regenerate the README charts in docs/images/ with the CLI
	$(BIN)/hwsim plot roofline --arch h100-sxm --arch tpu-v4 --peak-dtype bf16 --peak-dtype fp8 \
		--model llama2-7b --phase decode --batch 8 --context-len 1024 -o docs/images/roofline.png
	$(BIN)/hwsim plot energy --arch h100-sxm --arch tpu-v4 --arch wse2 --per-token \
		--model llama2-7b --phase decode --batch 8 --context-len 1024 -o docs/images/energy.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
