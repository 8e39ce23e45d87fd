"""In-memory-compute crossbar emulator hardware."""

from .crossbar import Crossbar, magic_divider
from .noise import GaussianNoise

__all__ = ["Crossbar", "GaussianNoise", "magic_divider"]
