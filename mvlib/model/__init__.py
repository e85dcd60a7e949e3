"""The model: unfold/fold (``unfold``), the paper's blocks (``blocks``), the keras-io example's blocks
(``kerasio``), the variant table (``config``), the assembly (``mobilevit``) and Apple's weights
(``convert``, needs PyTorch + transformers)."""

from mvlib.model.config import VARIANTS, MobileViTConfig, Stage
from mvlib.model.mobilevit import create_mobilevit, parameter_counts

__all__ = ["VARIANTS", "MobileViTConfig", "Stage", "create_mobilevit", "parameter_counts"]
