"""What a trained model is worth: metrics with confidence intervals (Dice and grouped
bootstraps included), MC-dropout uncertainty, calibration, Grad-CAM, and the figures; and
the trained model outside the notebook: model cards, prediction and evaluation on any
folder (`python -m tl_helpers.evaluate.predict`, `python -m tl_helpers.evaluate`).
Imports only rooms above."""
