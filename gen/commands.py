"""Core subcommands: generate, lint, synth and the NoC benchmark."""


def register(commands, bench):
    pass
