"""Training: the recipes (``recipes``), a resumable run on any backend (``train``), evaluation
(``evaluate``) and the trained weights that ship with the package (``pretrained``)."""

from mvlib.training.evaluate import Evaluation, evaluate_model
from mvlib.training.recipes import RECIPES, Recipe, get_recipe, make_optimizer
from mvlib.training.run import RunFolder, TrainResult, data_parallel, train

__all__ = ["RECIPES", "Evaluation", "Recipe", "RunFolder", "TrainResult", "data_parallel", "evaluate_model", "get_recipe",
           "make_optimizer", "train"]
