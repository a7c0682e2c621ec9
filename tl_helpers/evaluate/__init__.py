"""What a trained model is worth: metrics with confidence intervals (Dice and grouped
bootstraps included), MC-dropout uncertainty, calibration, Grad-CAM, the figures, and the
audits several chapters share (near-duplicates across splits, metadata shortcuts).
Imports only `paths` and `data`."""
