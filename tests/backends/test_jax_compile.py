"""JAX's compiled pass measures the weights the model has at each audit (never those of
its first trace), and a model jax.jit cannot trace is audited op by op with the same
numbers after one warning (`jax_compile_checks.py`, run with KERAS_BACKEND=jax)."""

from backend_runs import run_script


def test_compiled_pass_follows_the_weights_and_falls_back_for_untraceable_models():
    done = run_script("jax", "jax_compile_checks.py", block_tensorflow=True)
    assert done.stdout.splitlines()[-2:] == ["new weights measured", "untraceable model audited op by op"], done.stdout
