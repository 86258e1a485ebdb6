#!/usr/bin/python3
"""Check YAML desired-state files against schema/kvreconcile.schema.json.

Usage:
    check_schema.py SCHEMA [--expect valid|invalid] ROOT...

--expect valid (the default): every YAML document (*.yaml, *.yml) under each ROOT must validate;
one line per file.
--expect invalid: each ROOT is one fixture case; at least one document under it must fail (a YAML
error counts as a failure); one line per case.

Ends with "N passed, N failed"; exits 1 if anything failed (an invalid schema counts as a failure),
2 on a usage error.

Run it with Debian's /usr/bin/python3 (python3-jsonschema, python3-yaml). YAML is read the way
kvreconcile reads it: YAML 1.2 core types (so `yes`, `on` and bare dates like 2026-11-01 are strings,
not booleans or dates), and duplicate mapping keys and merge keys (`<<`) are errors.
"""

import argparse
import json
import os
import re
import sys

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover
    sys.stderr.write("check_schema.py: %s (run with /usr/bin/python3, which has python3-jsonschema "
                     "and python3-yaml)\n" % e)
    sys.exit(2)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars and no duplicate or merge keys."""


# Replace PyYAML's YAML 1.1 implicit resolvers with the YAML 1.2 core schema.
StrictLoader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in [
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     list("-+0123456789.")),
]:
    StrictLoader.add_implicit_resolver(_tag, re.compile(_regexp), _first)


def _construct_bool(loader, node):
    return loader.construct_scalar(node) in ("true", "True", "TRUE")


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


StrictLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _construct_mapping(loader, node, deep=False):
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(
            None, None, "expected a mapping node, but found %s" % node.id, node.start_mark)
    mapping = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "merge keys ('<<') are not supported", key_node.start_mark)
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found an unhashable key", key_node.start_mark)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found duplicate key %r" % (key,), key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def yaml_files(root):
    """YAML files under root (or root itself), sorted; hidden entries are skipped."""
    if os.path.isfile(root):
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and f.endswith((".yaml", ".yml")):
                found.append(os.path.join(dirpath, f))
    return found


MAX_NODES = 1000000


def expanded_size(node, memo, active):
    """Node count of a document with aliases expanded; raises ValueError on a recursive alias.

    PyYAML shares aliased nodes instead of copying them, so a "billion laughs" document loads
    quickly but would take the validator forever; measure it before validating."""
    if not isinstance(node, (dict, list)):
        return 1
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise ValueError("recursive alias")
    active.add(key)
    children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
    total = 1
    for child in children:
        total += expanded_size(child, memo, active)
        if total > MAX_NODES:
            break
    active.discard(key)
    memo[key] = total
    return total


def where(error):
    path = "".join("[%d]" % p if isinstance(p, int) else "." + str(p) for p in error.absolute_path)
    return path or "(document)"


def check_file(validator, path):
    """Returns a list of problems, each a string; empty when every document is valid."""
    problems = []
    try:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.load_all(f, Loader=StrictLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return ["yaml: %s" % str(e).replace("\n", " ")]
    for i, doc in enumerate(docs, 1):
        if doc is None:
            continue  # an empty document (only comments, or a stray ---)
        try:
            if expanded_size(doc, {}, set()) > MAX_NODES:
                problems.append("document %d: more than %d nodes once aliases are expanded"
                                % (i, MAX_NODES))
                continue
        except ValueError as e:
            problems.append("document %d: %s" % (i, e))
            continue
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            problems.append("document %d: %s: %s" % (i, where(err), err.message))
    return problems


def main(argv):
    ap = argparse.ArgumentParser(description="Validate kvreconcile YAML against the JSON Schema.")
    ap.add_argument("schema", help="path of kvreconcile.schema.json")
    ap.add_argument("--expect", choices=("valid", "invalid"), default="valid",
                    help="valid: every document must validate; invalid: each ROOT is a case in which "
                         "at least one document must fail")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every problem found")
    ap.add_argument("roots", nargs="+", metavar="ROOT")
    args = ap.parse_intermixed_args(argv)

    try:
        with open(args.schema, encoding="utf-8") as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, jsonschema.exceptions.SchemaError) as e:
        message = e.message if isinstance(e, jsonschema.exceptions.SchemaError) else str(e)
        print("schema %s: %s" % (args.schema, message))
        print("0 passed, 1 failed")
        return 1
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    passed = failed = 0
    for root in args.roots:
        if not os.path.exists(root):
            print("FAIL %s: no such file or directory" % root)
            failed += 1
            continue
        files = yaml_files(root)
        if args.expect == "valid":
            if not files:
                print("FAIL %s: no YAML files" % root)
                failed += 1
            for path in files:
                problems = check_file(validator, path)
                if problems:
                    failed += 1
                    print("FAIL %s" % path)
                    for p in problems:
                        print("    %s" % p)
                else:
                    passed += 1
                    print("ok   %s" % path)
        else:
            if not files:
                print("FAIL %s: no YAML files" % root)
                failed += 1
                continue
            found = []
            for path in files:
                found += ["%s: %s" % (os.path.relpath(path, root), p)
                          for p in check_file(validator, path)]
            if found:
                passed += 1
                print("ok   %s: rejected (%s)" % (root, found[0] if len(found) == 1 else
                                                  "%s; and %d more" % (found[0], len(found) - 1)))
                if args.verbose:
                    for p in found:
                        print("    %s" % p)
            else:
                failed += 1
                print("FAIL %s: every document is valid, expected a rejection" % root)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
