"""A trained model outside the notebook: model cards (`model_cards`), predictions on any
files (`predict`) and evaluation on any labelled folder (`external`). Serving, not
evaluation: it loads models, so it sits below `train` and `evaluate`."""
