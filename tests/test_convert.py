"""Faithfulness: the Keras paper model computes what an independent implementation computes.

Hugging Face transformers' PyTorch ``MobileViTForImageClassification`` is built with random weights
(and random BatchNorm statistics, so eval-mode BN is not the identity), copied into our Keras model
with ``mvlib.model.convert``, and both are run on the same random images.
"""

import numpy as np
import pytest

import mvlib  # noqa: F401  (selects the TensorFlow backend before keras is imported)
from mvlib.model.convert import copy_hf_weights, hf_config, hf_module_name
from mvlib.model import create_mobilevit

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _random_hf_model(variant: str, num_classes: int, image_size: int):
    torch.manual_seed(0)
    hf = transformers.MobileViTForImageClassification(hf_config(variant, num_classes, image_size)).eval()
    with torch.no_grad():  # randomise BN buffers: default mean 0 / var 1 would hide a mean/var swap
        for module in hf.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return hf


@pytest.mark.parametrize("image_size", [256, 160])
def test_xxs_matches_huggingface(image_size):
    hf = _random_hf_model("xxs", 5, image_size)
    assert hf.config.hidden_sizes == [64, 80, 96]
    assert hf.config.neck_hidden_sizes == [16, 16, 24, 48, 64, 80, 320]
    assert hf.config.expand_ratio == 2
    model = create_mobilevit("xxs", 5, image_size, classifier_activation=None)
    copy_hf_weights(model, hf.state_dict())

    pixels = np.random.default_rng(1).uniform(0, 255, (2, image_size, image_size, 3)).astype("float32")
    keras_logits = np.asarray(model(pixels, training=False))
    with torch.no_grad():  # HF takes NCHW in [0, 1]; ours takes NHWC in [0, 255]
        hf_logits = hf(torch.from_numpy(pixels / 255).permute(0, 3, 1, 2)).logits.numpy()
    assert np.abs(hf_logits).max() > 0.1  # a real signal, not two zero vectors
    np.testing.assert_allclose(keras_logits, hf_logits, atol=1e-4, rtol=0)


def test_converter_is_strict():
    hf = _random_hf_model("xxs", 5, 256)
    state = dict(hf.state_dict())
    state["mobilevit.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="not used"):
        copy_hf_weights(create_mobilevit("xxs", 5, 256), state)


def test_bgr_checkpoints_are_flipped_to_rgb():
    hf = _random_hf_model("xxs", 5, 256)
    rgb, bgr = create_mobilevit("xxs", 5, 256), create_mobilevit("xxs", 5, 256)
    copy_hf_weights(rgb, hf.state_dict())
    copy_hf_weights(bgr, hf.state_dict(), bgr_input=True)
    w_rgb, w_bgr = rgb.get_layer("stem_conv").kernel.numpy(), bgr.get_layer("stem_conv").kernel.numpy()
    np.testing.assert_array_equal(w_rgb[:, :, ::-1, :], w_bgr)


def test_layer_name_mapping_examples():
    assert hf_module_name("stage3_mvit_transformer1_attn") == "mobilevit.encoder.layer.2.transformer.layer.1.attention"
    assert hf_module_name("stage2_mv2_1_dw_bn") == "mobilevit.encoder.layer.1.layer.1.conv_3x3.normalization"
    assert hf_module_name("stage4_mv2_expand_conv") == "mobilevit.encoder.layer.3.downsampling_layer.expand_1x1.convolution"
    assert hf_module_name("stage5_mvit_local_proj_conv") == "mobilevit.encoder.layer.4.conv_1x1.convolution"
    with pytest.raises(KeyError):
        hf_module_name("no_such_layer")
