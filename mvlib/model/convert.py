"""Copy Hugging Face transformers' PyTorch MobileViT weights into the Keras paper variants.

Used twice: the equivalence test (random HF weights -> same logits in Keras, proving the Keras model
is the paper's architecture), and by online users who want Apple's ImageNet weights::

    model = from_pretrained("apple/mobilevit-xx-small")   # needs `pip install mvlib[torch]`

The converter is strict: every Keras weight must be written exactly once and every HF tensor used,
so a renamed layer cannot silently stay random.
"""

from __future__ import annotations

import re

import numpy as np

from mvlib.model import VARIANTS, create_mobilevit

# Keras layer-name prefix (regex) -> HF module path template. Groups are reused in the template.
_NAME_MAP = [
    (r"stem", "mobilevit.conv_stem"),
    (r"stage1_mv2_(\d+)_(expand|dw|project)", "mobilevit.encoder.layer.0.layer.{0}.{1}"),
    (r"stage2_mv2_(\d+)_(expand|dw|project)", "mobilevit.encoder.layer.1.layer.{0}.{1}"),
    (r"stage(\d)_mv2_(expand|dw|project)", "mobilevit.encoder.layer.{0-1}.downsampling_layer.{1}"),
    (r"stage(\d)_mvit_local", "mobilevit.encoder.layer.{0-1}.conv_kxk"),
    (r"stage(\d)_mvit_local_proj", "mobilevit.encoder.layer.{0-1}.conv_1x1"),
    (r"stage(\d)_mvit_transformer(\d+)_(norm1|norm2|attn|ffn1|ffn2)", "mobilevit.encoder.layer.{0-1}.transformer.layer.{1}.{2}"),
    (r"stage(\d)_mvit_norm", "mobilevit.encoder.layer.{0-1}.layernorm"),
    (r"stage(\d)_mvit_proj", "mobilevit.encoder.layer.{0-1}.conv_projection"),
    (r"stage(\d)_mvit_fusion", "mobilevit.encoder.layer.{0-1}.fusion"),
    (r"final", "mobilevit.conv_1x1_exp"),
    (r"head_classifier", "classifier"),
]
_PART = {
    "expand": "expand_1x1",
    "dw": "conv_3x3",
    "project": "reduce_1x1",
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn": "attention",
    "ffn1": "intermediate.dense",
    "ffn2": "output.dense",
}
_SUFFIX = {"conv": "convolution", "dwconv": "convolution", "bn": "normalization"}


def hf_module_name(layer_name: str) -> str:
    """Map a Keras layer name (e.g. ``stage3_mvit_transformer1_attn``) to its HF module path."""
    stem, _, suffix = layer_name.rpartition("_")
    if suffix not in _SUFFIX:  # layers without a conv/bn suffix: LayerNorm, Dense, MHA
        stem, suffix = layer_name, ""
    for pattern, template in _NAME_MAP:
        m = re.fullmatch(pattern, stem)
        if m:
            groups = [_PART.get(g, g) for g in m.groups()]
            path = template.replace("{0-1}", str(int(groups[0]) - 1) if groups else "")
            path = path.format(*groups)
            return f"{path}.{_SUFFIX[suffix]}" if suffix else path
    raise KeyError(f"no HF counterpart for Keras layer {layer_name!r}")


def _layer_arrays(layer, prefix: str, sd: dict, used: set) -> list[np.ndarray]:
    def take(key):
        used.add(f"{prefix}.{key}")
        return sd[f"{prefix}.{key}"]

    kind = type(layer).__name__
    if kind == "Conv2D":
        return [take("weight").transpose(2, 3, 1, 0)]  # (out, in, kh, kw) -> (kh, kw, in, out)
    if kind == "DepthwiseConv2D":
        return [take("weight").transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if kind == "BatchNormalization":
        return [take("weight"), take("bias"), take("running_mean"), take("running_var")]
    if kind == "LayerNormalization":
        return [take("weight"), take("bias")]
    if kind == "Dense":
        return [take("weight").T, take("bias")]
    if kind == "MultiHeadAttention":
        heads, head_dim = layer.num_heads, layer.key_dim
        out = []
        for part in ("query", "key", "value"):
            w = take(f"attention.{part}.weight").T  # (d_in, heads*head_dim)
            out += [w.reshape(w.shape[0], heads, head_dim), take(f"attention.{part}.bias").reshape(heads, head_dim)]
        w = take("output.dense.weight").T  # (heads*head_dim, d_out)
        return out + [w.reshape(heads, head_dim, w.shape[1]), take("output.dense.bias")]
    raise TypeError(f"don't know how to convert a {kind} ({layer.name})")


def copy_hf_weights(keras_model, state_dict: dict, bgr_input: bool = False) -> None:
    """Copy an HF ``MobileViTForImageClassification`` state dict into a Keras paper-variant model.

    Args:
        state_dict: name -> array (torch tensors are converted with ``.numpy()``).
        bgr_input: the checkpoint expects BGR pixels (Apple's do). The stem's input channels are then
            reversed so the Keras model keeps taking RGB.
    """
    sd = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in state_dict.items()}
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    used: set[str] = set()
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        arrays = _layer_arrays(layer, hf_module_name(layer.name), sd, used)
        if bgr_input and layer.name == "stem_conv":
            arrays[0] = arrays[0][:, :, ::-1, :]
        if type(layer).__name__ == "MultiHeadAttention":  # assign per projection: no reliance on weight order
            projections = (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense)
            for i, dense in enumerate(projections):
                dense.kernel.assign(arrays[2 * i])
                dense.bias.assign(arrays[2 * i + 1])
        else:
            layer.set_weights(arrays)
    unused = sorted(set(sd) - used)
    if unused:
        raise ValueError(f"{len(unused)} HF tensors were not used, e.g. {unused[:3]}")


def hf_config(variant: str = "xxs", num_classes: int = 1000, image_size: int = 256):
    """The transformers ``MobileViTConfig`` for one of our paper variants (lazy import of transformers)."""
    from transformers import MobileViTConfig

    c = VARIANTS[variant]
    if c.style != "paper":
        raise ValueError("only the paper variants (xxs, xs, s) have an HF counterpart")
    return MobileViTConfig(
        image_size=image_size,
        hidden_sizes=[s.dim for s in c.stages if s.kind == "mvit"],
        neck_hidden_sizes=[c.stem, *(s.channels for s in c.stages), c.final_channels],
        expand_ratio=float(c.expansion),
        num_attention_heads=c.num_heads,
        num_labels=num_classes,
    )


def variant_of(hf_config_) -> str:
    """Which of our variants an HF MobileViT config describes."""
    for name, c in VARIANTS.items():
        if c.style == "paper" and list(hf_config_.hidden_sizes) == [s.dim for s in c.stages if s.kind == "mvit"]:
            return name
    raise ValueError(f"no paper variant has hidden_sizes {hf_config_.hidden_sizes}")


def from_pretrained(repo_id: str = "apple/mobilevit-xx-small", image_size: int = 256, classifier_activation="softmax"):
    """Download an HF MobileViT checkpoint (online, with torch installed) and return the Keras model.

    Apple's checkpoints were trained on BGR input in [0, 1]; the returned model takes RGB in [0, 255].
    """
    from transformers import MobileViTForImageClassification

    hf = MobileViTForImageClassification.from_pretrained(repo_id).eval()
    model = create_mobilevit(
        variant_of(hf.config), hf.config.num_labels, image_size, classifier_activation=classifier_activation
    )
    copy_hf_weights(model, hf.state_dict(), bgr_input=True)
    return model
