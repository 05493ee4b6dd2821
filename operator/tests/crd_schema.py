"""Validates custom resources against their CustomResourceDefinitions' schemas, as an API
server would admit them, and stricter: a field the schema does not know is an error (the API
server would silently prune it, so the rendered intent would be lost).

usage: crd_schema.py <dir of CRD YAML files>   (objects as a JSON list on stdin)
Prints one line per problem and exits 1 if there is any; 0 with the count validated.
"""

import json
import pathlib
import sys

import jsonschema
import yaml


def load_crds(directory):
    crds = {}
    for path in sorted(pathlib.Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served", True):
                    crds[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return crds


def unknown_fields(instance, schema, path):
    """Fields of `instance` that `schema` neither declares nor lets through."""
    if not isinstance(schema, dict):
        return
    if isinstance(instance, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            if props is not None and key in props:
                yield from unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from unknown_fields(value, extra, f"{path}.{key}")
            elif props is not None and extra is not True and path != "$.metadata":
                yield f"{path}.{key}: unknown field"
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(instance):
            yield from unknown_fields(item, schema["items"], f"{path}[{i}]")


def main():
    crds = load_crds(sys.argv[1])
    objects = json.load(sys.stdin)
    problems = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        schema = crds.get((obj.get("apiVersion"), obj.get("kind")))
        if schema is None:
            problems.append(f"{name}: no CRD serves {obj.get('apiVersion')} {obj.get('kind')}")
            continue
        validator = jsonschema.Draft7Validator(schema)
        for error in validator.iter_errors(obj):
            where = "$" + "".join(f"[{p!r}]" for p in error.absolute_path)
            problems.append(f"{name}: {where}: {error.message}")
        problems.extend(f"{name}: {p}" for p in unknown_fields(obj, schema, "$"))
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"{len(objects)} objects valid")


if __name__ == "__main__":
    main()
