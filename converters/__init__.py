"""The model-format chain (Keras/.h5/SavedModel/.pb -> TFLite -> kmodel) and kmodel reading."""
