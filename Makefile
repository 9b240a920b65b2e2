# Fresh machine: `make demo` sets up and profiles the bundled example; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch: the one CPU build (see pyproject.toml); tf makes TFLite models for tests and experiments;
# variants: the converters of profile --variants; openvino: the fourth runtime
EXTRAS ?= test,torch,tf,variants,openvino

.PHONY: demo test bench docker-base fixtures clean zoo-packages convert-packages

$(BIN)/profile: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	# setuptools' notes on editable installs are for packagers, not for someone running the demo
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	$(MAKE) --no-print-directory zoo-packages convert-packages
	touch $@

# The mmb-cnn networks (experiments/zoo/mmb.py): pytorchcv and tf2cv declare a CUDA torchvision and
# Keras 2 a second TensorFlow, none of which they need here, so they go in without dependencies.
# The mmb-vit networks (experiments/zoo/mmb_vit.py): transformers 4.57, the last release with VAN, ViT-hybrid
# and EfficientFormer; it does not depend on torch, so its own dependencies (tokenizers, hub) come with it.
zoo-packages:
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps pytorchcv==0.0.74 tf2cv==0.0.18 tf-keras==2.21.0
	$(BIN)/pip install --quiet --disable-pip-version-check transformers==4.57.3

# ONNX -> TFLite (profile --variants tflite): onnx2tf pins exact TensorFlow, onnx and onnxruntime releases
# that it does not need for the conversions made here, so it and the modules it imports go in without
# dependencies, beside the project's own versions (tests/test_convert.py checks what it makes).
# torch.export program -> TFLite (profile --variants tflite on a .pt2): litert-torch declares the LLM tooling
# it ships beside the converter (transformers, kagglehub, sentencepiece, ...); the converter needs jax, its
# MLIR converter and torchao, so those go in without dependencies too.
convert-packages:
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps onnx2tf==1.29.24 onnx-graphsurgeon==0.6.1 \
	    sng4onnx==2.0.1 psutil==7.2.2
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps litert-torch==0.10.0 litert-converter==0.5.0 \
	    torchao==0.18.0 jax==0.10.2 jaxlib==0.10.2 jaxtyping==0.3.11 wadler-lindig==0.1.8 multipledispatch==1.0.0

demo: $(BIN)/profile
	$(BIN)/profile --env env.template --store $(VENV)/demo.db \
	    experiments/examples/tiny_cnn.tflite experiments/examples/tiny_cnn.onnx

test: $(BIN)/profile
	$(BIN)/python -m pytest -q -rs --durations=10 tests --doctest-modules profiler/api.py profiler/config.py profiler/store.py calibration/api.py profiler/escape.py

bench: $(BIN)/profile
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/sweep.py
	$(BIN)/python benchmarks/search_loop.py
	$(BIN)/python benchmarks/busy.py
	$(BIN)/python benchmarks/evaluation.py

# Base image for hosts without a registry (needs root, debootstrap and a Docker engine).
docker-base:
	bash containers/build-offline-base.sh

# Regenerate the committed example models (TFLite needs the tf extra).
fixtures: $(BIN)/profile
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[tf]'
	$(BIN)/python experiments/examples/make_models.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache profiles.db
