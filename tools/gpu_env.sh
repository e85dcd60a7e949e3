# Sourced by tools/gpu_*.sh: Keras on JAX (installed from wheels/ where the box lacks it: no network), and
# JAX's persistent compilation cache, shared by the job's processes. PY: the Python that has JAX.
PY=${PYTHON:-python}
export KERAS_BACKEND=jax  # before the check: Keras' default backend is TensorFlow, which such a box lacks
$PY -c "import keras" 2>/dev/null || $PY -m pip install --quiet --no-index --find-links wheels keras==3.15.1
# Every process builds a model: under JAX each new weight shape compiles its own initializer kernel (~20 s per
# xxs on a 2-core CPU); with the cache, later processes reuse what earlier ones compiled.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-${TMPDIR:-/tmp}/mvlib-jax-cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}
