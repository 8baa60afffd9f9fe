"""Quaff quantized LoRA: the algorithm library, usable without the service."""

__version__ = "0.1.0"
