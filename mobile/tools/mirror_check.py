"""Checks that the iOS view models mirror the Android ones one to one: the same models
(`…Model` classes), each with the same public intents (functions), so the JVM tests of the
Kotlin models cover the behaviour both apps share. Parsed with tree-sitter (no Swift toolchain
runs here). Lifecycle (`close`), listener callbacks (`override`) and static helpers are left out.

Usage: mirror_check.py KOTLIN_DIR SWIFT_DIR. Exit status 1 on any difference, listed."""

import sys
from pathlib import Path

import tree_sitter
import tree_sitter_kotlin
import tree_sitter_swift

KOTLIN = tree_sitter.Parser(tree_sitter.Language(tree_sitter_kotlin.language()))
SWIFT = tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))
LIFECYCLE = {"close"}


def modifiers(node):
    """The modifier words on a declaration (`private`, `override`, `public`, `static`, …)."""
    for child in node.children:
        if child.type == "modifiers":
            return set(child.text.decode().split())
    return set()


def name_of(node, kinds):
    for child in node.children:
        if child.type in kinds:
            return child.text.decode()
    return None


def models(parser, root, suffix, public, name_kinds):
    """{model name: set of intents} for every class named `…Model` under `root`."""
    found = {}
    for path in sorted(Path(root).rglob(f"*{suffix}")):
        tree = parser.parse(path.read_bytes())
        stack = [tree.root_node]
        while stack:
            node = stack.pop()
            stack.extend(node.children)
            if node.type != "class_declaration":
                continue
            name = name_of(node, {"identifier", "type_identifier", "simple_identifier"})
            if not name or not name.endswith("Model"):
                continue
            body = next((c for c in node.children if c.type == "class_body"), None)
            intents = set()
            for member in body.children if body else []:
                if member.type != "function_declaration":
                    continue
                words = modifiers(member)
                fun = name_of(member, name_kinds)
                if public(words) and "override" not in words and "static" not in words and fun not in LIFECYCLE:
                    intents.add(fun)
            found[name] = intents
    return found


def main(kotlin_dir, swift_dir):
    kotlin = models(KOTLIN, kotlin_dir, ".kt", lambda w: not w & {"private", "internal", "protected"}, {"identifier", "simple_identifier"})
    swift = models(SWIFT, swift_dir, ".swift", lambda w: "public" in w, {"simple_identifier"})
    problems = []
    for name in sorted(set(kotlin) | set(swift)):
        if name not in swift:
            problems.append(f"{name}: in Kotlin, not in Swift")
        elif name not in kotlin:
            problems.append(f"{name}: in Swift, not in Kotlin")
        elif kotlin[name] != swift[name]:
            only_k = sorted(kotlin[name] - swift[name])
            only_s = sorted(swift[name] - kotlin[name])
            problems.append(f"{name}: only in Kotlin {only_k}, only in Swift {only_s}")
    for line in problems:
        print(line)
    intents = sum(len(v) for v in kotlin.values())
    print(f"{len(kotlin)} Kotlin models, {len(swift)} Swift models, {intents} intents; {len(problems)} differences")
    return 1 if problems or not kotlin else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
