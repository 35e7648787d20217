"""workbench: a terminal workbench for LoRA / QLoRA fine-tuning with unsloth and TRL."""

__version__ = "0.1.0"
