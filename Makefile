# lipmem: `make setup`, `make quickstart`, `make test`, `make bench`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lipmem-installed
DATA   := data/synth

.PHONY: setup quickstart test bench lint clean ablation

setup: $(STAMP)

# Re-install only when the dependency list changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(DATA)/manifest.json: | $(STAMP)
	$(BIN)/lipmem data synth --out $(DATA)

quickstart: setup $(DATA)/manifest.json
	$(BIN)/lipmem bank build --config configs/bank_quickstart.yaml
	$(BIN)/lipmem bank inspect memory-bank:n80 --out runs/quickstart-bank
	$(BIN)/lipmem fit --config configs/quickstart.yaml
	$(BIN)/lipmem data export --data $(DATA) --split test --index 0 --out runs/quickstart/test_clip.mp4
	# the best checkpoint by val/mouth_score (save_top_k 1: the newest such file is this run's)
	$(BIN)/lipmem infer --model "$$(ls -t runs/quickstart/checkpoints/epoch*-mouth*.ckpt | head -n 1)" \
		--face-crop full --face runs/quickstart/test_clip.mp4 --audio runs/quickstart/test_clip.mp4 \
		--out runs/quickstart/lipsync_test_clip.mp4
	@echo
	@echo "quickstart outputs:"
	@echo "  corpus:       $(DATA)/ (manifest.json + WebDataset shards)"
	@echo "  memory bank:  artifacts/memory-bank/ (local registry; memory-bank:n80 = latest build)"
	@echo "  bank images:  runs/quickstart-bank/*_codes.png, *_cluster_sizes.png"
	@echo "  checkpoints:  runs/quickstart/checkpoints/ (last.ckpt and the best by val/mouth_score)"
	@echo "  val samples:  runs/quickstart/samples/val_latest.png (masked | generated | ground truth)"
	@echo "  W&B run:      runs/quickstart/wandb/ (offline; 'wandb sync' it to upload)"
	@echo "  config:       runs/quickstart/config.yaml"
	@echo "  lip sync:     runs/quickstart/lipsync_test_clip.mp4 (an unseen speaker's clip, mouth"
	@echo "                regenerated from its audio by lipmem infer; test_clip.mp4 is the original)"

# Memory ablation: 21 fits of 300 batches + evals, about 2.5 h on 2 idle CPU cores;
# resumable (a rerun skips finished runs). Full size: ABLATION=configs/ablation/gpu.yaml.
ABLATION ?= configs/ablation/cpu.yaml
ablation: setup
	$(BIN)/lipmem ablation run --config $(ABLATION) --out runs/ablation

# lists the 25 slowest tests: the suite should stay within ~20 min on 2 idle cores
test: setup
	$(BIN)/python -m pytest -q --durations=25 tests

bench: setup $(DATA)/manifest.json
	$(BIN)/python -m benchmarks.train_step
	$(BIN)/python -m benchmarks.data_pipeline
	$(BIN)/python -m benchmarks.clustering
	$(BIN)/python -m benchmarks.infer
	$(BIN)/python -m benchmarks.prep_speed
	$(BIN)/python -m benchmarks.perceptual_cost --threads 1
	$(BIN)/python -m benchmarks.learning_speed --arms recipe recipe_no_perceptual before \
		--points 100 200 300 500

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf runs $(DATA) .pytest_cache
