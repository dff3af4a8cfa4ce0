# Two commands do everything on a fresh machine: `make chat` and `make test`.
# Each creates .venv when missing, installs torch 2.13.0 (the CPU build) when the venv has no
# torch, then the project with its test tools at the versions in constraints.txt.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: chat demo phrases test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

chat: $(STAMP)
	$(PY) chat.py

# Train, evaluate and talk to a small model on the shipped sample corpus (about a minute).
demo: $(STAMP)
	$(VENV)/bin/chatbot train --corpus sample --out runs/demo --epochs 60 --embedding-dim 64 \
		--hidden-size 128 --vocab-size 1000 --max-tokens 2000 --lr 0.005 --eval-every 50 --patience 100
	$(VENV)/bin/chatbot evaluate --model runs/demo --corpus sample
	printf 'hi there\nwhat is your name?\ndo you like music?\n안녕\n' | $(VENV)/bin/chatbot reply --model runs/demo

# The explainers' own example: a tiny English-to-Korean translation model on the shipped phrases
# (under a minute on two cores), then a walk-through of one reply: which English piece each Korean
# piece attends to. Additive attention with input feeding and dropout: docs/walk-through.md says why.
phrases: $(STAMP)
	$(VENV)/bin/chatbot train --corpus phrases --out runs/phrases --epochs 150 --embedding-dim 64 \
		--hidden-size 128 --vocab-size 1000 --max-tokens 1000 --lr 0.005 --eval-every 50 --patience 100 \
		--attention additive --input-feeding --context-turns 0 --blank-source 0 --dropout 0.2 --threads 2
	$(VENV)/bin/chatbot explain "Thank you" --model runs/phrases --strategy greedy

# The linter and formatter first (ruff, configured in pyproject.toml), then the suite.
test: lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) runs/demo runs/phrases
