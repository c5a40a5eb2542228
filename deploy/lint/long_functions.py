#!/usr/bin/env python3
"""Lists Rust functions outside tests longer than the limit (80 lines by default).

A function is counted from its `fn` line to its closing brace. Test modules (`#[cfg(test)]`),
`tests/` folders and the e2e crate are skipped: long test bodies read as one scenario.
Exits 1 when a function outside ALLOWED is over the limit, so `make static-checks` holds it.
"""

import pathlib
import re
import sys

LIMIT = 80
# path:function -> why it may stay long. Keep this empty unless the closing note says why.
ALLOWED: dict[str, str] = {}

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+([A-Za-z0-9_]+)")


def strip_strings(line: str) -> str:
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


def functions(path: pathlib.Path):
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith("#[cfg(test)]"):
            return
        match = FN.match(lines[i])
        if not match:
            i += 1
            continue
        depth, start, opened = 0, i, False
        j = i
        while j < len(lines):
            code = strip_strings(lines[j])
            if not opened and ";" in code and "{" not in code:
                break  # a declaration without a body (trait item)
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                break
            j += 1
        yield match.group(6), start + 1, j - start + 1
        i = j + 1 if opened else i + 1


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "crates")
    over = []
    for path in sorted(root.rglob("*.rs")):
        if "/tests/" in str(path) or path.name == "tests.rs":
            continue
        for name, line, length in functions(path):
            if length > LIMIT and f"{path}:{name}" not in ALLOWED:
                over.append((length, f"{path}:{line}", name))
    for length, place, name in sorted(over, reverse=True):
        print(f"{length:4} lines  {place}  {name}")
    if over:
        print(f"{len(over)} functions over {LIMIT} lines (split them or add to ALLOWED with why)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
