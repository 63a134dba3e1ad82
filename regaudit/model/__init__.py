"""Reading a model: its regularizers, its layer graph, its tags, its lint rules."""
