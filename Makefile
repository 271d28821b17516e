# Two commands do everything on a fresh machine (see README.md):
#   make book   set up .venv, then build the HTML book into _build/html (executing each chapter changed since the
#               last build, or every chapter the first time)
#   make test   set up .venv, then lint, the import contracts, unit tests, the reader notebooks current, the
#               assignment's pairing, the strict book build, the notebooks under nbval (those no build has executed
#               as they are), browser check, and the GitHub workflows and CITATION.cff against their schemas
# Point at a local CIFAR-10 copy with EVA9_DATA_DIR=/path/to/cifar10 (else torchvision downloads it into data/).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# MathJax 3 as one self-contained file (SVG output, every TeX extension, no fonts to fetch), served by the book so
# that math renders offline; _config.yml points mathjax_path at it. Git-ignored: fetched from the npm registry.
MATHJAX_VERSION ?= 3.2.2
MATHJAX := _vendor/mathjax/tex-svg-full.js

# Notebooks execute with book/ as their working directory, so hand them an absolute data path.
ifdef EVA9_DATA_DIR
export EVA9_DATA_DIR := $(abspath $(EVA9_DATA_DIR))
endif

.PHONY: setup book test imports unit notebooks notebooks-unpublished reader-notebooks assignment-pairing book-strict browser-check chromium mathjax lint workflows citation \
	set-repository student assignment grade clean

setup: $(STAMP)

# Without a CUDA GPU, PyTorch's CPU-only wheels first, from its own index when that answers (no CUDA libraries);
# else, or with a GPU, the default wheels come with requirements.txt. tools/torch_wheels.py says which it did.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python tools/torch_wheels.py
	$(BIN)/pip install -r requirements.txt
	touch $@

# The chapters execute once per change: the builds keep their executions in jupyter-cache (_config.yml's execute
# section), and nbval skips a chapter recorded there with the same code and inputs (tools/chapter_cache.py, which
# also empties the cache at each build's start when the package, results/, the requirements or EVA9_* changed).
CACHE := _build/.jupyter_cache
CHAPTER_CACHE := $(BIN)/python tools/chapter_cache.py

book: $(STAMP) $(MATHJAX) student
	$(BIN)/jupyter-book build .
	@echo "Book built: open _build/html/index.html"

test: lint imports unit reader-notebooks assignment-pairing book-strict notebooks notebooks-unpublished browser-check workflows citation

# The package's layering (import-linter contracts in pyproject.toml): one-way layers, no cycles, the engine below
# the analysis. First in `make test`: a wrong import fails in seconds.
imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests --ignore=tests/html

# nbval's per-cell limit is the book build's (_config.yml, execute.timeout): the live training cell is the longest.
NBVAL := $(BIN)/pytest --nbval --nbval-cell-timeout=3600

# The chapters run as a reader without a GPU gets them: the training chapter trains the cpu profile live (into
# book/runs/cpu, which the other runs then reuse instead of training again), the others explain the published
# weights in results/weights/. nbval runs each notebook that no book build or earlier nbval run executed without
# error with the same code and inputs (after `make book` or `make book-strict`: none); NBVAL_ALL=1 runs them all.
notebooks: $(STAMP)
	$(CHAPTER_CACHE) nbval $(CACHE) --pytest "$(NBVAL)" $(if $(NBVAL_ALL),--all) book/*.ipynb

# The chapters that use a trained network, as a reader gets them where no weights are published (an empty results
# folder and an empty hub cache, so that no copy of the weights is at hand): they fall back to the profile's run.
# Their passes are recorded apart (other inputs, other outputs).
notebooks-unpublished: $(STAMP)
	mkdir -p _build/no-results _build/no-results-torch
	EVA9_RESULTS_DIR=$(CURDIR)/_build/no-results TORCH_HOME=$(CURDIR)/_build/no-results-torch $(CHAPTER_CACHE) nbval \
	  _build/.nbval-unpublished --pytest "$(NBVAL)" $(if $(NBVAL_ALL),--all) book/intro.ipynb book/training.ipynb \
	  book/gradcam.ipynb book/errors.ipynb book/results.ipynb

# The notebooks a reader opens (Colab, Jupyter, nbval) are made from the MyST chapters by tools/reader_notebooks.py:
# regenerate them, then fail if that changed a committed notebook or made one git does not know.
reader-notebooks: $(STAMP)
	$(BIN)/python tools/reader_notebooks.py book
	git diff --exit-code -- 'book/*.ipynb'
	@test -z "$$(git status --porcelain -- 'book/*.ipynb')" || { \
	  echo "book/*.ipynb are not current: commit what tools/reader_notebooks.py made"; git status --short -- 'book/*.ipynb'; exit 1; }

# The assignment's master notebook is a jupytext pair (assignment/README.md): its .md and .ipynb agree.
assignment-pairing: $(STAMP)
	$(BIN)/jupytext --to ipynb --update assignment/s9_assignment.md
	git diff --exit-code -- 'assignment/*.ipynb'

# Every page read afresh (--all), so that a page unchanged since `make book` shows its warnings too; its outputs come
# from the cache, so a chapter executed by `make book` is not executed again.
book-strict: $(STAMP) $(MATHJAX) student
	$(BIN)/jupyter-book build . -W -n --keep-going --all

# The student edition: every chapter's notebook without the exercise solutions, and their zip, which the intro links
# as a download (so the book's builds make it first).
student: $(STAMP)
	$(BIN)/python tools/reader_notebooks.py student _build/student

# The S9 assignment (assignment/README.md): Otter Assign turns the master notebook into the student notebook
# (_build/assignment/student/, with s9.py and the public checks) and the autograder's tests (_build/assignment/autograder/).
assignment: $(STAMP)
	rm -rf _build/assignment
	$(BIN)/python -m eva9.assignment build --out _build/assignment

# Grade every submission folder in SUBMISSIONS=dir: _build/grades/grades.csv and one feedback file per student.
grade: assignment
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder-of-submission-folders"; exit 2; }
	$(BIN)/python -m eva9.assignment grade $(SUBMISSIONS) --out _build/grades

browser-check: $(STAMP) chromium
	$(BIN)/pytest tests/html

chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "Installing Debian's chromium and chromium-driver for the browser check"; \
	  apt-get update -q && apt-get install -y -q chromium chromium-driver; }

# Lint, format and type checks (ruff and mypy; settings in pyproject.toml); the first step of `make test`.
lint: $(STAMP)
	$(BIN)/ruff check .; status=$$?; $(BIN)/ruff format --check . || status=1; $(BIN)/mypy || status=1; exit $$status

# The GitHub workflows against GitHub's workflow schema, and CITATION.cff against the Citation File Format schema;
# check-jsonschema ships both schemas (--builtin-schema), so neither check needs the network.
workflows: $(STAMP)
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

citation: $(STAMP)
	$(BIN)/check-jsonschema --builtin-schema vendor.citation-file-format CITATION.cff

# Point every mention of the GitHub repository at REPO=owner/name (see tools/set_repository.py).
set-repository: $(STAMP)
	@test -n "$(REPO)" || { echo "usage: make set-repository REPO=owner/name"; exit 2; }
	$(BIN)/python tools/set_repository.py $(REPO)

mathjax: $(MATHJAX)

$(MATHJAX):
	@command -v npm >/dev/null || { \
	  echo "Installing Debian's npm to fetch MathJax $(MATHJAX_VERSION)"; \
	  apt-get update -q && apt-get install -y -q npm; }
	rm -rf _vendor/.mathjax-pack && mkdir -p _vendor/.mathjax-pack $(dir $@)
	cd _vendor/.mathjax-pack && npm pack --silent mathjax@$(MATHJAX_VERSION) && tar xzf mathjax-$(MATHJAX_VERSION).tgz
	cp _vendor/.mathjax-pack/package/es5/tex-svg-full.js _vendor/.mathjax-pack/package/LICENSE $(dir $@)
	rm -rf _vendor/.mathjax-pack

clean:
	rm -rf _build .pytest_cache book/runs
