#!/usr/bin/env python3
"""Fails when sibling modules import each other in a cycle.

The rule (docs/ARCHITECTURE.md, "Layout"): imports run one way, down the
layers. A module may use its ancestors' items (a child using its parent's
types) and its descendants' (a parent using its children), but among the
children of one module the "uses" graph must have no cycle: if `bench::load`
uses `bench::pingpong`, then `bench::pingpong` must not use `bench::load`,
directly or through other siblings. What two siblings both need belongs in a
third.

It reads every `.rs` file of each crate root given (default: the library,
`src/lib.rs`, and the binary, `src/main.rs`), maps files to module paths,
collects the paths they name (`use` trees, and inline `crate::`, `super::`,
`self::` paths), resolves each to the deepest module it names, and checks the
sibling graph under every module. Test modules count: a test is code too.
Comments and literals are blanked first (a `//` inside a string is not a
comment), an inline `mod name { ... }` is a module of its own (its `super::`
is the file's module), and `path as alias` names `path`. The fixtures in
scripts/fixtures/modules are a cycle it must see and a crate that would fool
a naive reader; CI runs both.

Usage: scripts/check-modules.py [--graph] [ROOT.rs ...]
Exit status: 0 no cycle, 1 a cycle (each printed), 2 a file cannot be read.
"""
import os
import re
import sys

# Strings, character literals and comments, matched in one pass so that a
# `//` inside a string is not a comment and a `"` inside a comment is not a
# string. A lifetime (`'a`) has no closing quote and is left alone.
TOKEN = re.compile(
    r'(?P<string>b?r(?P<hashes>#*)"(?:.|\n)*?"(?P=hashes)|b?"(?:\\.|[^"\\])*")'
    r"|(?P<char>b?'(?:\\.|[^'\\\n])')"
    r"|(?P<comment>//[^\n]*|/\*(?:.|\n)*?\*/)"
)
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)
INLINE_MOD = re.compile(r"\bmod\s+(\w+)\s*\{")
USE = re.compile(r"\buse\s+([^;]+);")
INLINE = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")


def strip(code):
    """The code with every comment a space and every string or character
    literal empty, so that only code is searched."""

    def blank(match):
        return " " if match.group("comment") else '""'

    return TOKEN.sub(blank, code)


def scopes(code, here):
    """Splits a file's code into (module path, text) pieces: the text inside
    an inline `mod name { ... }` belongs to `here + (name,)`, where `super::`
    means `here`."""
    pieces, stack, start, depth = [], [(here, -1)], 0, 0
    opening = {m.end() - 1: m.group(1) for m in INLINE_MOD.finditer(code)}
    for at, ch in enumerate(code):
        if ch == "{":
            if at in opening:
                pieces.append((stack[-1][0], code[start:at]))
                stack.append((stack[-1][0] + (opening[at],), depth))
                start = at + 1
            depth += 1
        elif ch == "}":
            depth -= 1
            if len(stack) > 1 and depth == stack[-1][1]:
                pieces.append((stack[-1][0], code[start:at]))
                stack.pop()
                start = at + 1
    pieces.append((stack[-1][0], code[start:]))
    return pieces


def module_files(root):
    """Yields (module path as a tuple, file) for the crate rooted at `root`."""
    pending = [((), root)]
    while pending:
        path, file = pending.pop()
        yield path, file
        with open(file, encoding="utf-8") as handle:
            code = strip(handle.read())
        directory = os.path.dirname(file)
        stem = os.path.splitext(os.path.basename(file))[0]
        if path and stem != "mod":
            directory = os.path.join(directory, stem)
        for name in MOD_DECL.findall(code):
            for candidate in (os.path.join(directory, name + ".rs"),
                              os.path.join(directory, name, "mod.rs")):
                if os.path.exists(candidate):
                    pending.append((path + (name,), candidate))
                    break


def expand(tree):
    """`a::{b, c::{d, e as f}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    depth, start, parts = 0, 0, []
    brace = tree.find("{")
    if brace < 0:
        return [tree]
    prefix, body = tree[:brace], tree[brace + 1:tree.rfind("}")]
    for at, ch in enumerate(body + ","):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            if body[start:at]:
                parts.append(body[start:at])
            start = at + 1
    return [p for part in parts for p in expand(prefix + part)]


def absolute(path, here):
    """Resolves `crate::`, `super::` and `self::` against module `here`."""
    segments = path.split("::")
    if segments[0] == "crate":
        return tuple(segments[1:])
    base = list(here)
    while segments and segments[0] in ("super", "self"):
        if segments.pop(0) == "super":
            if not base:
                return None
            base.pop()
    return tuple(base) + tuple(segments)


def deepest_module(path, modules, reexports):
    """The module a path names: the deepest module prefix, followed through
    a `pub use` there (`crate::Endpoint` is `crate::endpoint`'s item)."""
    for length in range(len(path), -1, -1):
        if path[:length] in modules:
            item = path[length] if length < len(path) else None
            return reexports.get((path[:length], item), path[:length])
    return None


PUB_USE = re.compile(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);")


def reexports_of(files, modules):
    """(module, name) -> the module whose item `pub use` re-exports as name."""
    found = {}
    for here, file in files.items():
        with open(file, encoding="utf-8") as handle:
            code = strip(handle.read())
        for tree in PUB_USE.findall(code):
            for path in expand(tree):
                segments = path.split("::")
                if segments[0] not in ("crate", "super", "self"):
                    segments = ["self"] + segments
                target = absolute("::".join(segments), here)
                if target and target[:-1] in modules:
                    found[(here, target[-1])] = target[:-1] if target not in modules else target
    return found


def edges(crate_root):
    files = dict(module_files(crate_root))
    modules = set(files)
    reexports = reexports_of(files, modules)
    found = set()
    named = []
    for module, file in files.items():
        with open(file, encoding="utf-8") as handle:
            code = strip(handle.read())
        for here, text in scopes(code, module):
            modules.add(here)
            named += [(here, p) for tree in USE.findall(text) for p in expand(tree)]
            named += [(here, p) for p in INLINE.findall(text)]
    for here, path in named:
        if not re.match(r"(crate|super|self)::", path):
            # A bare `use name::...` names a child of `here` or an
            # external crate; a child is always allowed.
            continue
        target = absolute(path, here)
        target = target and deepest_module(target, modules, reexports)
        if target is None:
            continue
        common = 0
        while common < min(len(here), len(target)) and here[common] == target[common]:
            common += 1
        if common == len(here) or common == len(target):
            continue  # an ancestor or a descendant
        parent = here[:common]
        found.add((parent, here[common], target[common]))
    return found


def cycles(found):
    graph = {}
    for parent, source, target in found:
        graph.setdefault(parent, {}).setdefault(source, set()).add(target)
    reported = []
    for parent, siblings in sorted(graph.items()):
        state = {}

        def visit(node, trail):
            state[node] = "open"
            for nxt in sorted(siblings.get(node, ())):
                if state.get(nxt) == "open":
                    reported.append((parent, trail[trail.index(nxt):] + [nxt]))
                elif nxt not in state:
                    visit(nxt, trail + [nxt])
            state[node] = "done"

        for node in sorted(siblings):
            if node not in state:
                visit(node, [node])
    return reported


def main(argv):
    show_graph = "--graph" in argv
    roots = [a for a in argv if a != "--graph"] or ["src/lib.rs", "src/main.rs"]
    status = 0
    for root in roots:
        try:
            found = edges(root)
        except OSError as err:
            print(f"error: cannot read {err.filename}: {err.strerror.lower()}", file=sys.stderr)
            return 2
        if show_graph:
            for parent, source, target in sorted(found):
                scope = "::".join(("crate",) + parent)
                print(f"{root}: {scope}: {source} -> {target}")
        for parent, loop in cycles(found):
            scope = "::".join(("crate",) + parent)
            print(f"error: module cycle in {root} under {scope}: {' -> '.join(loop)}", file=sys.stderr)
            status = 1
    if status == 0:
        print(f"module graph: no cycle among siblings in {', '.join(roots)}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
