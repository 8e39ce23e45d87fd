"""Verilog-safe module names: the check of a configured name and the sanitiser of a
name derived from a file name.

A safe name is a plain identifier (``[A-Za-z_][A-Za-z0-9_]*``, at most 64 characters)
that is not a Verilog-2005 or SystemVerilog-2017 keyword, so every tool reading the
generated RTL (Verilator, yosys, Icarus) takes it as it is.
"""

from __future__ import annotations

import re

MAX_LEN = 64

KEYWORDS = frozenset(["#", "noqa:", "SIM905", "(a", "keyword", "table", "reads", "best", "as", "text)", "accept_on", "alias", "always", "always_comb", "always_ff", "always_latch", "and", "assert", "assign", "assume", "automatic", "before", "begin", "bind", "bins", "binsof", "bit", "break", "buf", "bufif0", "bufif1", "byte", "case", "casex", "casez", "cell", "chandle", "checker", "class", "clocking", "cmos", "config", "const", "constraint", "context", "continue", "cover", "covergroup", "coverpoint", "cross", "deassign", "default", "defparam", "design", "disable", "dist", "do", "edge", "else", "end", "endcase", "endchecker", "endclass", "endclocking", "endconfig", "endfunction", "endgenerate", "endgroup", "endinterface", "endmodule", "endpackage", "endprimitive", "endprogram", "endproperty", "endspecify", "endsequence", "endtable", "endtask", "enum", "event", "eventually", "expect", "export", "extends", "extern", "final", "first_match", "for", "force", "foreach", "forever", "fork", "forkjoin", "function", "generate", "genvar", "global", "highz0", "highz1", "if", "iff", "ifnone", "ignore_bins", "illegal_bins", "implements", "implies", "import", "incdir", "include", "initial", "inout", "input", "inside", "instance", "int", "integer", "interconnect", "interface", "intersect", "join", "join_any", "join_none", "large", "let", "liblist", "library", "local", "localparam", "logic", "longint", "macromodule", "matches", "medium", "modport", "module", "nand", "negedge", "nettype", "new", "nexttime", "nmos", "nor", "noshowcancelled", "not", "notif0", "notif1", "null", "or", "output", "package", "packed", "parameter", "pmos", "posedge", "primitive", "priority", "program", "property", "protected", "pull0", "pull1", "pulldown", "pullup", "pulsestyle_ondetect", "pulsestyle_onevent", "pure", "rand", "randc", "randcase", "randsequence", "rcmos", "real", "realtime", "ref", "reg", "reject_on", "release", "repeat", "restrict", "return", "rnmos", "rpmos", "rtran", "rtranif0", "rtranif1", "s_always", "s_eventually", "s_nexttime", "s_until", "s_until_with", "scalared", "sequence", "shortint", "shortreal", "showcancelled", "signed", "small", "soft", "solve", "specify", "specparam", "static", "string", "strong", "strong0", "strong1", "struct", "super", "supply0", "supply1", "sync_accept_on", "sync_reject_on", "table", "tagged", "task", "this", "throughout", "time", "timeprecision", "timeunit", "tran", "tranif0", "tranif1", "tri", "tri0", "tri1", "triand", "trior", "trireg", "type", "typedef", "union", "unique", "unique0", "unsigned", "until", "until_with", "untyped", "use", "uwire", "var", "vectored", "virtual", "void", "wait", "wait_order", "wand", "weak", "weak0", "weak1", "while", "wildcard", "wire", "with", "within", "wor", "xnor", "xor"])

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_name(name) -> str | None:
    """None if ``name`` is a safe module name, else why not (for an error message)."""
    if not isinstance(name, str) or not _IDENT.match(name):
        return "must be a Verilog identifier: a letter or _, then letters, digits or _"
    if len(name) > MAX_LEN:
        return f"must be at most {MAX_LEN} characters"
    if name in KEYWORDS or name.startswith("\\"):
        return "is a Verilog/SystemVerilog keyword, which cannot name a module"
    return None


def safe_name(text, prefix: str = "m") -> str:
    """A safe module name made from ``text`` (a file stem): other characters become ``_``,
    a leading digit or a keyword gets ``prefix_``."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", str(text).encode("ascii", "replace").decode())
    if not out or not (out[0].isalpha() or out[0] == "_") or out in KEYWORDS:
        out = f"{prefix}_{out}"
    return out[:MAX_LEN]
