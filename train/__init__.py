"""crashwatch training: fine-tunes SmolVLM2 with a classifier head into a crash-risk model."""
