"""Training: fine-tunes SmolVLM2 with a classifier head into a crash-risk model, and evaluates checkpoints."""
