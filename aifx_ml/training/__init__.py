"""Training: datasets of candle windows, model fitting, evaluation against baselines, runs."""
