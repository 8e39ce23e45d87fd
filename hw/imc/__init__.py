"""In-memory-compute crossbar emulator hardware."""
