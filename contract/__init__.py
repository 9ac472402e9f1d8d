"""The training/serving contract: what the trainer, the exporter and the monitor must agree on, written once.

Window sampling, frame preprocessing, the prompt with its question, video reading, the dataset format, the
bundle format and the versioned JSON files they are described by. Torch-free and at the bottom of the import
graph (docs/architecture.md): everything else may import it, it imports nothing of the project's.
"""

__version__ = "0.1.0"
