# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out
SHARED_TOOLS := ../shared/tools/check_slicer_api.py
# versions Slicer 5.12 bundles: the environment is pinned to them
BUNDLED := Resources/slicer-5.12-bundled.txt

.PHONY: env test demo bench clean liver-model reproduce-liver liver-cv fuzz ti-model reproduce-ti weak-model reproduce-weak reproduce-renal mutation

$(STAMP): pyproject.toml $(BUNDLED)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU wheel of torch 2.13.0 installs from local disk; other specs may pull CUDA builds
	$(PY) -m pip install -q torch==2.13.0 -c $(BUNDLED)
	$(PY) -m pip install -q -e ".[test]" -c $(BUNDLED)
	touch $(STAMP)

env: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q Testing
	if [ -f $(SHARED_TOOLS) ]; then $(PY) $(SHARED_TOOLS) .; fi

demo: $(STAMP)
	$(PY) Scripts/demo.py --out $(OUT)/demo

# every benchmarks/bench_*.py in turn (CPU; bench_liver trains a brief ResNet-18 reference, ~2 min)
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# rebuild Resources/Models/liver_lesion_demo.* from the SYNTHETIC phantom with the task's recipe, deterministic by
# seed; metrics measured through the product path in both offset modes; rewrites README's liver-card paragraph
liver-model: $(STAMP)
	$(PY) Scripts/build_liver_model.py --readme README.md

# seed 000's tables on the SYNTHETIC phantom: product-path and mask-mode Table 1, 5 attention arms x 5 seeds with
# focus / occlusion against each arm's own randomised-weights null, paired patient-cluster bootstrap + Holm
# (26 trainings with the task recipe, one progress line each: ~25-30 min on 2 CPU cores)
reproduce-liver: $(STAMP)
	$(PY) -m slicercad liver reproduce --out $(OUT)/liver

# recipe-selection cross-validation: task.RECIPE vs candidates differing only in its choices (intensity /
# breath-hold augmentation, epochs), patient-level 3-fold on the SYNTHETIC training phantom only, balanced accuracy
# on held-out patients, mean ± sd, the stated rule picks one (15 trainings, ~4.5 min on 2 CPU cores)
liver-cv: $(STAMP)
	$(PY) Scripts/liver_cv.py --out $(OUT)/liver_cv

# rebuild Resources/Models/ti_offset_demo.* from the SYNTHETIC TI-scout phantom with the task's recipe (task.RECIPE),
# deterministic by seed (~7 min on 2 shared CPU cores)
ti-model: $(STAMP)
	$(PY) Scripts/build_ti_model.py

# seed 002 on the SYNTHETIC phantom: in range / under / over for CNN, physics, fused (clean, 4K / 3-MP photos,
# out-of-range frames, operator scenario) + controls; trains the closed and the open-bin model with the recipe
reproduce-ti: $(STAMP)
	$(PY) -m slicercad ti reproduce --out $(OUT)/ti

# rebuild Resources/Models/weak_lesion_demo.* from the SYNTHETIC lesion phantom, deterministic by seed
weak-model: $(STAMP)
	$(PY) Scripts/build_weak_model.py

# seed 001 (1): train on two lesion types, test on the third, inversion ablation, baselines, prompt errors (SYNTHETIC)
reproduce-weak: $(STAMP)
	$(PY) -m slicercad weak reproduce --out $(OUT)/weak

# change each quantity the liver method / evaluation defines, one at a time in a throwaway copy, and check a test fails
mutation: $(STAMP)
	$(PY) Scripts/mutation_check.py --out $(OUT)/mutation

fuzz: $(STAMP)
	$(PY) -m slicercad.fuzz --inputs 10000 --seed 0 --out $(OUT)/fuzz

clean:
	rm -rf $(OUT) .pytest_cache

# seed 004 on the SYNTHETIC renal phantom: per-phase / multi-phase CNN AUCs, combined LR, baselines, controls
# (patient-level 5-fold, nested for the LR; ~20-40 min on 2 CPU cores); KITS23=path adds the real clinical baseline
reproduce-renal: $(STAMP)
	$(PY) -m slicercad renal reproduce --out $(OUT)/renal $(if $(KITS23),--kits23 $(KITS23))

# rebuild Resources/Models/renal_mass_demo.* from the SYNTHETIC renal phantom, deterministic by seed; card metrics
# measured through the product path (inference.assess_masses) on held-out phantom patients
.PHONY: renal-model
renal-model: $(STAMP)
	$(PY) Scripts/build_renal_model.py

.PHONY: anomaly-model reproduce-anomaly

# rebuild Resources/Models/anomaly_glow_{head3d,cxr2d}_demo.* (Glow on SYNTHETIC normals, deterministic by seed)
anomaly-model: $(STAMP)
	$(PY) Scripts/build_anomaly_model.py

# seed 001 (2): Glow vs complexity variant vs f-AnoGAN vs atlas z / HU threshold, controls (SYNTHETIC)
reproduce-anomaly: $(STAMP)
	$(PY) -m slicercad anomaly reproduce --out $(OUT)/anomaly$(if $(SEED),_seed$(SEED)) --seed $(or $(SEED),0)
