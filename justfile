# dsocr tasks. just comes with the dev extra: once README's first command has made .venv,
# `.venv/bin/just demo` / `.venv/bin/just test` (`setup` reinstalls the same).

venv := ".venv"
py := venv / "bin/python"

# Create .venv and install dsocr with the capture, report and dev extras (CPU torch 2.13.0).
setup:
    python3 -m venv {{venv}}
    {{py}} -m pip install -q --upgrade pip
    {{py}} -m pip install -q torch==2.13.0 -e '.[capture,report,dev]'

# Capture, analyze and emit the sample pages on the embedded tiny model.
demo out="runs/demo":
    {{venv}}/bin/dsocr capture --out {{out}} --max-new-tokens inf
    {{venv}}/bin/dsocr analyze {{out}}
    {{venv}}/bin/dsocr emit {{out}}

# The test suite (GPU tests skip themselves without CUDA).
test *args:
    {{py}} -m pytest -q -n auto {{args}}

# A fast loop: the suite without the tests marked slow (several processes, long captures).
test-fast *args:
    {{py}} -m pytest -q -n auto -m "not slow" {{args}}

lint:
    {{venv}}/bin/ruff format --check .
    {{venv}}/bin/ruff check .

fmt:
    {{venv}}/bin/ruff format .
    {{venv}}/bin/ruff check --fix .

# Benchmarks: ratios measured side by side in one run (see bench/README.md).
bench:
    {{py}} bench/run_all.py
