"""p-bit (probabilistic bit) Ising hardware."""
