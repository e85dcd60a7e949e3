"""tf_flowers for every Keras backend: one image (``images``), batches for ``model.fit`` (``pipeline``),
the dataset and where it comes from (``flowers``), synthetic stand-ins (``synthetic``)."""

from mvlib.data.flowers import (
    SOURCES,
    DataSourceError,
    FlowerData,
    SkippedFilesWarning,
    default_data_dir,
    list_image_files,
    load_flowers,
    make_synthetic_flowers,
    split_stratified,
    tfds_available,
)
from mvlib.data.images import AUGMENTATIONS, RESIZE_MARGIN, augment, decode_image, load_image, preprocess_images, read_image, resize
from mvlib.data.pipeline import MIXES, Batches, TrainStream, mix_batch, one_hot
from mvlib.data.synthetic import synthetic_images

__all__ = [
    "AUGMENTATIONS", "MIXES", "RESIZE_MARGIN", "SOURCES", "Batches", "DataSourceError", "FlowerData", "SkippedFilesWarning",
    "TrainStream", "augment", "decode_image", "default_data_dir", "list_image_files", "load_flowers", "load_image",
    "make_synthetic_flowers", "mix_batch", "one_hot", "preprocess_images", "read_image", "resize", "split_stratified", "synthetic_images", "tfds_available",
]
