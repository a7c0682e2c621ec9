"""Fine-tune only the top of a backbone, fast: cache the frozen bottom's output once.

Fine-tuning every layer of a CNN on two CPU cores is slow, and most of the time goes to
the first, high-resolution layers, whose generic filters (edges, textures) need the least
adapting. Freeze the bottom, train the top: the bottom's output for an image then never
changes, so, as with frozen features (`tl_helpers.features`), it can be computed once and
the top trained on it for many epochs at a fraction of the cost.

    lower, upper = split_functional_model(backbone.model, "block3_2_add")
    maps = tl.features.extract_features(lower, preprocess, paths, size)   # once, cached
    top = keras.Model(upper.input, head(upper.output))                     # train this
    full = join_models(lower, top)                                         # image -> prediction

The two parts share the original layers (and weights): training `upper` trains the
backbone itself. The cut must be a layer whose output is the only connection between
bottom and top (no skip connection across it); `split_functional_model` checks that.
"""
from __future__ import annotations

import keras


def _inbound_layer_names(layer) -> list[str]:
    """Names of the layers whose outputs `layer` takes in the model it was built in.

    The first call is the original graph's; later calls (a split made earlier, which
    reuses the layer) add nodes after it.
    """
    node = layer._inbound_nodes[0]
    tensors = keras.tree.flatten(node.arguments.args) + keras.tree.flatten(node.arguments.kwargs)
    return [t._keras_history.operation.name for t in tensors if hasattr(t, "_keras_history")]


def split_functional_model(model: keras.Model, cut_layer: str) -> tuple[keras.Model, keras.Model]:
    """(lower, upper): lower maps the model's input to `cut_layer`'s output, upper the rest.

    `upper(lower(x))` equals `model(x)`. Both reuse the model's layers, so their weights are
    shared with it. Raises ValueError when a layer above the cut reads a tensor from below
    it other than the cut layer's output (a skip connection across the cut). The model is
    a functional model with one input and one output. Taught in chapter 2.
    """
    names = [layer.name for layer in model.layers]
    if cut_layer not in names:
        raise ValueError(f"no layer named {cut_layer!r} in {model.name} (first layers: {names[:6]} ...)")
    position = names.index(cut_layer)
    below = set(names[:position + 1])
    lower = keras.Model(model.input, model.get_layer(cut_layer).output, name=f"{model.name}_to_{cut_layer}")
    upper_input = keras.Input(tuple(model.get_layer(cut_layer).output.shape[1:]), name=f"{cut_layer}_output")
    produced = {cut_layer: upper_input}
    for layer in model.layers[position + 1:]:
        sources = _inbound_layer_names(layer)
        crossing = [s for s in sources if s in below and s != cut_layer]
        if crossing:
            raise ValueError(f"cannot cut at {cut_layer!r}: layer {layer.name} also reads {crossing} "
                             f"from below the cut (a skip connection); cut after it")
        inputs = [produced[s] for s in sources]
        produced[layer.name] = layer(inputs if len(inputs) > 1 else inputs[0])
    output_name = model.outputs[0]._keras_history.operation.name
    upper = keras.Model(upper_input, produced[output_name], name=f"{model.name}_from_{cut_layer}")
    return lower, upper


def join_models(lower: keras.Model, upper: keras.Model, name: str = "model") -> keras.Model:
    """One model, lower then upper (layers and weights shared): what to predict with and save.

    Taught in chapter 2.
    """
    return keras.Model(lower.input, upper(lower.output), name=name)


# --- chapter 2: BatchNorm keeps what ImageNet taught it -------------------------------------

def freeze_batch_norm(model: keras.Model) -> int:
    """Make every BatchNormalization layer of `model` non-trainable, so that fine-tuning keeps
    its ImageNet statistics and scales (the usual advice with small batches). Returns how many
    layers it froze. Taught in chapter 2.
    """
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.trainable = False
    return len(layers)
