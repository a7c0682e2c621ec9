"""What a trained model is worth: metrics with confidence intervals (Dice and grouped
bootstraps included), MC-dropout uncertainty, and the figures. Imports only rooms above."""
