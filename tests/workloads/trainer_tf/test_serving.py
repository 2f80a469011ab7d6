"""The TF serving backend loads a real exported SavedModel and answers numpy batches with v2 metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from workloads.trainer_tf.serving import ModelInputError, TfSavedModel


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, Path]:
    """A small Keras model with known weights, exported the way the trainer exports."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(3, 2), name="features")
    outputs = keras.layers.Dense(4, activation="softmax", name="probabilities")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("export") / "1"
    model.export(str(path))
    return model, path


def test_metadata_uses_kserve_v2_names_and_datatypes(exported: tuple[keras.Model, Path]) -> None:
    served = TfSavedModel(exported[1])
    assert [(t.name, t.datatype, t.shape) for t in served.inputs] == [("features", "FP32", [-1, 3, 2])]
    assert [(t.datatype, t.shape) for t in served.outputs] == [("FP32", [-1, 4])]


def test_predict_matches_the_in_memory_model(exported: tuple[keras.Model, Path]) -> None:
    model, path = exported
    batch = np.random.default_rng(0).normal(size=(5, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(TfSavedModel(path).predict(batch), model(batch).numpy(), rtol=1e-5, atol=1e-6)


def test_integer_batches_are_cast_to_the_input_dtype(exported: tuple[keras.Model, Path]) -> None:
    model, path = exported
    batch = np.arange(12, dtype=np.int64).reshape(2, 3, 2)
    expected = model(tf.constant(batch, tf.float32)).numpy()
    np.testing.assert_allclose(TfSavedModel(path).predict(batch), expected, rtol=1e-5, atol=1e-6)


def test_wrong_shape_names_the_input_and_both_shapes(exported: tuple[keras.Model, Path]) -> None:
    with pytest.raises(ModelInputError, match=r"input 'features': expected shape \[-1, 3, 2\] \(got \[2, 2, 3\]\)"):
        TfSavedModel(exported[1]).predict(np.zeros((2, 2, 3), np.float32))


def test_unknown_signature_lists_the_available_ones(exported: tuple[keras.Model, Path]) -> None:
    with pytest.raises(ValueError, match=r"has no signature 'predict' \(has \['serve', 'serving_default'\]\)"):
        TfSavedModel(exported[1], signature="predict")
