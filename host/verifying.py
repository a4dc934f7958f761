"""Run a kmodel in nncase's simulator and its reference in TF on the same images; compare."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadInputError
from .metrics import compare, confusion


@dataclass
class Inputs:
    """The same images as the reference and the kmodel each want them."""

    reference: np.ndarray  # float32, normalised, model input shape per image
    kmodel: np.ndarray  # uint8 raw pixels or float32 normalised, kmodel input shape per image
    labels: np.ndarray


def prepare_inputs(images: np.ndarray, labels: np.ndarray, kmodel_input) -> Inputs:
    from k210.models.datasets import normalise

    shape = list(kmodel_input.shape[1:])
    if int(np.prod(shape)) != int(np.prod(images.shape[1:])):
        raise BadInputError(f"dataset images {list(images.shape[1:])} do not fit the kmodel input {kmodel_input.shape}")
    normalised = normalise(images).reshape(len(images), *shape)
    if kmodel_input.dtype == "uint8":
        kmodel_inputs = images.reshape(len(images), *shape).astype(np.uint8)
    elif kmodel_input.dtype == "float32":
        kmodel_inputs = normalised
    else:
        raise BadInputError(f"kmodel input dtype {kmodel_input.dtype} is not supported")
    return Inputs(normalised.astype(np.float32), kmodel_inputs, np.asarray(labels))


def verify_report(reference_out: np.ndarray, kmodel_out: np.ndarray, labels: np.ndarray,
                  class_names: list[str]) -> dict:
    classes = len(class_names)
    if reference_out.reshape(len(reference_out), -1).shape[1] != classes:
        raise BadInputError(
            f"the model has {reference_out.reshape(len(reference_out), -1).shape[1]} outputs but the dataset "
            f"has {classes} classes")
    report = compare(reference_out, kmodel_out, labels)
    report["labels"] = class_names
    report["confusion"] = {
        "reference": confusion(labels, reference_out.reshape(len(labels), -1).argmax(1), classes),
        "kmodel": confusion(labels, kmodel_out.reshape(len(labels), -1).argmax(1), classes),
    }
    return report
