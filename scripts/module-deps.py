#!/usr/bin/env python3
"""Lists the `crate::` edges between a crate's top-level modules and reports cycles.

Usage: scripts/module-deps.py [CRATE_SRC ...]   (default: engine/src server/src)

A node is a top-level module of the crate (`jobs`, `sources`, ...); inside
`connectors/` every folder or file is its own node (`connectors/postgres`,
`connectors/planned`) and `connectors/mod.rs` is the registry node
`connectors`. An edge A -> B means code in A names a path in B (`use
crate::b::...`, an inline `crate::b::x`, `super::...` leaving A's node, or a
parent module naming a child module's item). Tests (`#[cfg(test)]` modules
and `tests.rs` files) count too: a cycle through a test still tangles the
modules.

Two layering rules are checked as well: the connector contract
(`contract`) names only leaves (modules that name nothing), and no
connector folder reaches `jobs`, `connections`, `error` or the registry,
directly or through another module.
Exit status 1 when there is a cycle or a broken rule.
"""

import os
import re
import sys

GROUPED = {"connectors"}  # top-level modules whose children are nodes of their own

def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)

def module_path(src, file):
    rel = os.path.relpath(file, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel

def node_of(src, path):
    """The node a module path (list of names, crate-relative) belongs to,
    None when it names no module of the crate."""
    if not path:
        return None
    top = os.path.join(src, path[0])
    if not (os.path.exists(top + ".rs") or os.path.isdir(top)):
        return None
    if path[0] in GROUPED and len(path) > 1:
        child = os.path.join(top, path[1])
        if os.path.exists(child + ".rs") or os.path.isdir(child):
            return path[0] + "/" + path[1]
    return path[0]

def root_reexports(src):
    """Names the crate root re-exports (`pub use error::EngineError;`) -> their module."""
    out = {}
    for root_file in ("lib.rs", "main.rs"):
        file = os.path.join(src, root_file)
        if os.path.exists(file):
            text = strip_comments(open(file, encoding="utf-8").read())
            # Inline test modules (at the end of a file) are not architecture,
            # and their `super::` is one level deeper than the file's.
            text = re.split(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)[0]
            for m in re.finditer(r"\bpub\s+use\s+([^;]+);", text):
                for path in expand(m.group(1).replace("\n", " ")):
                    parts = path.split("::")
                    out[parts[-1]] = parts[:-1]
    return out

def use_paths(text, children):
    """Every `a::b::c` path named in the text, use trees expanded."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths.extend(expand(m.group(1).replace("\n", " ")))
    body = re.sub(r"\buse\s+[^;]+;", "", text)
    heads = "|".join(["crate", "super", "self"] + sorted(children))
    paths.extend(m.group(0) for m in re.finditer(r"(?<![\w:])(?:" + heads + r")(?:::\w+)+", body))
    return paths

def expand(tree, prefix=""):
    tree = tree.strip()
    m = re.match(r"^(.*?)::\{(.*)\}$", tree, flags=re.S)
    if m:
        out = []
        for part in split_top(m.group(2)):
            out.extend(expand(part, prefix + m.group(1) + "::"))
        return out
    tree = re.sub(r"\s+as\s+\w+$", "", tree)
    return [prefix + tree] if tree else []

def split_top(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]

def resolve(path, here, children):
    """The crate-relative module path a path names, or None for external crates."""
    parts = [p for p in path.split("::") if p]
    if not parts:
        return None
    if parts[0] == "crate":
        return parts[1:]
    if parts[0] in ("super", "self"):
        base = list(here)
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                base = base[:-1]
            parts = parts[1:]
        return base + parts
    if parts[0] in children:
        return list(here) + parts
    return None

def graph(src):
    edges = {}
    reexports = root_reexports(src)
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            file = os.path.join(root, name)
            here = module_path(src, file)
            src_node = node_of(src, here)
            if src_node is None:
                continue
            text = strip_comments(open(file, encoding="utf-8").read())
            # Inline test modules (at the end of a file) are not architecture,
            # and their `super::` is one level deeper than the file's.
            text = re.split(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)[0]
            children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, flags=re.M))
            for path in use_paths(text, children):
                target = resolve(path, here, children)
                if target and len(target) == 1 and target[0] in reexports:
                    target = reexports[target[0]]
                dst = node_of(src, target) if target else None
                if dst and dst != src_node:
                    edges.setdefault(src_node, set()).add(dst)
            edges.setdefault(src_node, set())
    return edges

def cycles(edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out

CONTRACT = "contract"
ABOVE_CONNECTORS = {"jobs", "connections", "error", "connectors"}

def layering(edges):
    """Edges that break the layering rules, as text."""
    broken = []
    for dst in sorted(edges.get(CONTRACT, ())):
        if edges.get(dst):
            broken.append(f"{CONTRACT} -> {dst}, which is not a leaf (it names {', '.join(sorted(edges[dst]))})")
    for src in sorted(edges):
        if src.startswith("connectors/"):
            for dst in sorted(reachable(edges, src) & ABOVE_CONNECTORS):
                broken.append(f"{src} reaches {dst}, above the connectors")
    return broken

def reachable(edges, start):
    """Every node `start` names, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for dst in edges.get(todo.pop(), ()):
            if dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return seen

def main():
    srcs = sys.argv[1:] or ["engine/src", "server/src"]
    found = False
    for src in srcs:
        edges = graph(src)
        print(f"== {src}")
        for a in sorted(edges):
            print(f"{a} -> {', '.join(sorted(edges[a])) or '(nothing)'}")
        comps = cycles(edges)
        for comp in comps:
            found = True
            inner = [f"{a} -> {b}" for a in comp for b in sorted(edges[a]) if b in comp]
            print(f"CYCLE: {{{', '.join(comp)}}} via {'; '.join(inner)}")
        if not comps:
            print("no cycles")
        if CONTRACT in edges:
            broken = layering(edges)
            for line in broken:
                found = True
                print(f"LAYERING: {line}")
            if not broken:
                print(f"{CONTRACT} names only leaves; no connector reaches {', '.join(sorted(ABOVE_CONNECTORS))}")
    sys.exit(1 if found else 0)

if __name__ == "__main__":
    main()
