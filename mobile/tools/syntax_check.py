"""Parses every hand-written Kotlin (.kt, .kts) and Swift (.swift) file under the given
directories with tree-sitter and reports each syntax error (an ERROR or MISSING node) as
`path:line:column`. Exit status 1 when any file has one: a broken brace or a stray token never
lands, even in code this machine cannot compile (the Android app, the iOS app).

Usage: syntax_check.py DIR... [--exclude DIR]...  The generated bindings are excluded: kotlinc
compiles the Kotlin ones here, and both use constructs these grammars do not know (`#if`
around attributes, a doc comment touching the next token)."""

import sys
from pathlib import Path

import tree_sitter
import tree_sitter_kotlin
import tree_sitter_swift

PARSERS = {
    ".kt": tree_sitter.Parser(tree_sitter.Language(tree_sitter_kotlin.language())),
    ".kts": tree_sitter.Parser(tree_sitter.Language(tree_sitter_kotlin.language())),
    ".swift": tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language())),
}


def errors(node):
    """The first error nodes under `node` (not their own error children)."""
    if node.is_error or node.is_missing:
        yield node
        return
    if not node.has_error:
        return
    for child in node.children:
        yield from errors(child)


def main(args):
    roots, excluded = [], []
    while args:
        arg = args.pop(0)
        if arg == "--exclude":
            excluded.append(Path(args.pop(0)).resolve())
        else:
            roots.append(arg)
    checked, bad = 0, 0
    for root in roots or ["."]:
        for path in sorted(Path(root).rglob("*")):
            parser = PARSERS.get(path.suffix)
            if parser is None or not path.is_file():
                continue
            if any(path.resolve().is_relative_to(e) for e in excluded):
                continue
            checked += 1
            tree = parser.parse(path.read_bytes())
            for node in errors(tree.root_node):
                bad += 1
                line, column = node.start_point
                what = "missing " + node.type if node.is_missing else "unexpected syntax"
                print(f"{path}:{line + 1}:{column + 1}: {what}")
    print(f"{checked} files checked, {bad} syntax errors")
    return 1 if bad or not checked else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
