"""The probe pass compiled on JAX: `jax.jit` with the model's variables passed in.

A jitted function that read the model's variables directly would bake their values in as
constants at its first trace, and every later audit would measure the weights of the
first. So the compiled function takes the variables' current values as an argument and
runs the pass inside a `keras.StatelessScope` that maps each variable to its value: the
layers read the values passed in, and whatever they would assign (a seed generator's
state, say) stays in the scope, never written back to the model. The variables are the
model's `variables`, every one Keras tracks (the ones its own JAX trainer passes in); a
value a layer keeps outside Keras' tracking would be read once, at the trace. One compilation per
input shape and per value of the static arguments (the last, smaller probe batch is a
second one).

A model whose code cannot be traced (it converts a tensor to numpy or branches on a
tensor's value in Python) runs the same function without `jax.jit`, op by op: one
warning says so, the numbers are the same.
"""

import warnings

import jax
import keras


def jax_compiled(function, variables, static=()):
    """`function(inputs, *args)` compiled: `variables` (Keras variables) are read at every
    call and passed in; `static`: positions in `args` of the arguments that fix a
    compilation (Python ints and bools)."""
    variables = list(variables)

    def stateless(values, inputs, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return function(inputs, *args)

    jitted = jax.jit(stateless, static_argnums=tuple(2 + position for position in static))
    state = {"jit": True}

    def run(inputs, *args):
        inputs = keras.tree.map_structure(keras.ops.convert_to_tensor, inputs)
        values = [variable.value for variable in variables]
        if state["jit"]:
            try:
                return jitted(values, inputs, *args)
            except Exception as error:  # noqa: BLE001 - JAX's tracer errors reach us re-wrapped
                # by Keras (an AttributeError, say); run op by op: an error the model
                # really has is raised from there, one only tracing meets is gone
                out = stateless(values, inputs, *args)
                state["jit"] = False
                said = str(error).splitlines()[0][:120] if str(error) else ""
                warnings.warn(f"regaudit: the model cannot be compiled with jax.jit ({type(error).__name__}: {said}); "
                              "the audit runs it op by op, with the same numbers, slower; a call with no Python "
                              "branch on a tensor's value and no numpy conversion is audited compiled",
                              stacklevel=2)
                return out
        return stateless(values, inputs, *args)

    return run
