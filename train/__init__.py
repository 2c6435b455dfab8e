"""Training and evaluation of the demo layout model: scripts run from the repository, never imported by dsocr."""
