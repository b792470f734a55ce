"""Replays of the continuous-learning loop over historical candles with a simulated clock."""
