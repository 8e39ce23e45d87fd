"""Crossbar (in-memory compute) configuration, energy model and commands."""
