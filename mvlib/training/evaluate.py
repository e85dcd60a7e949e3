"""Accuracy, per-class accuracy and the confusion matrix of a classifier on a labelled dataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Evaluation:
    class_names: list[str]
    labels: np.ndarray  # (n,) true class indices
    probabilities: np.ndarray  # (n, classes)

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).mean())

    @property
    def confusion(self) -> np.ndarray:
        """``confusion[true, predicted]`` counts."""
        k = len(self.class_names)
        return np.bincount(self.labels * k + self.predictions, minlength=k * k).reshape(k, k)

    @property
    def per_class_accuracy(self) -> dict[str, float]:
        c = self.confusion
        return {name: float(c[i, i] / max(1, c[i].sum())) for i, name in enumerate(self.class_names)}

    def misclassified(self) -> np.ndarray:
        """Indices of wrong predictions, most confident first."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        return wrong[np.argsort(-self.probabilities[wrong].max(axis=1))]

    def report(self) -> str:
        width = max(len(n) for n in self.class_names)
        lines = [f"top-1 accuracy: {self.accuracy:.2%} on {len(self.labels)} images"]
        lines += [f"  {name:<{width}}  {acc:.2%}" for name, acc in self.per_class_accuracy.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "num_images": int(len(self.labels)),
                "per_class_accuracy": self.per_class_accuracy, "confusion": self.confusion.tolist(),
                "class_names": list(self.class_names)}


def evaluate(predict_fn, dataset, class_names) -> Evaluation:
    """Run ``predict_fn(images) -> probabilities`` (a Keras model or any callable) over ``(images, one_hot)`` batches."""
    probs, labels = [], []
    for images, one_hot in dataset:
        out = predict_fn(images)
        probs.append(np.asarray(out))
        labels.append(np.asarray(one_hot).argmax(axis=1))
    if not probs:
        raise ValueError("the evaluation dataset is empty")
    return Evaluation(list(class_names), np.concatenate(labels), np.concatenate(probs))


def evaluate_model(model, dataset, class_names) -> Evaluation:
    """:func:`evaluate` with a Keras model, through ``predict_on_batch`` (compiled, NumPy out, every backend).

    A short last batch is padded to the first batch's size (and the padding's predictions dropped), so
    the compiled step sees one shape: no second trace per model."""
    batch_size = None

    def predict(images):
        nonlocal batch_size
        images = np.asarray(images)
        batch_size = batch_size or len(images)
        short = batch_size - len(images)
        if short <= 0:
            return model.predict_on_batch(images)
        padded = np.concatenate([images, np.zeros((short, *images.shape[1:]), images.dtype)])
        return np.asarray(model.predict_on_batch(padded))[: len(images)]

    return evaluate(predict, dataset, class_names)
