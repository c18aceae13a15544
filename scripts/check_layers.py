#!/usr/bin/env python3
"""check_layers.py - the analyzer's dependencies run one way: commands ->
formats -> model -> steps -> helpers -> reader, and no files depend on each
other in a circle.

    python3 scripts/check_layers.py [DIR]     # DIR: analyzer/ by default
    python3 scripts/check_layers.py --self-test

A source file depends on another when it names a function the other
defines (a call, or a function put in a table), and on each header it
includes; a header depends on the headers it includes. Each file of
DIR is in LAYERS, every header too; a file may use files of its own layer
or of a lower one, never a higher one, and the graph of all uses has no
circle. A new analyzer file must be added to LAYERS: the check fails
on a file it does not know. Exits 1 with one line per problem.
"""
import os
import re
import sys
import tempfile

# Top to bottom. A header sits at the layer of what it declares.
LAYERS = [
    ("commands", ["main.c", "cmd.h", "cmd_report.c", "cmd_run.c", "cmd_check.c", "cmd_diff.c",
                  "cmd_top.c", "cmd_metrics.c", "metrics_server.h", "metrics_server.c",
                  "metrics_scrape.h", "metrics_scrape.c", "metrics_trust.h", "metrics_trust.c",
                  "metrics_webconfig.h", "metrics_webconfig.c", "cmd_attach.c", "inject.h", "inject.c"]),
    ("formats", ["report.h", "report_formats.c", "report_text.c", "report_json.c", "report_html.c",
                 "report_folded.c", "report_chrome.c", "report_openmetrics.c", "report_html_views.c", "report_pprof.c",
                 "report_util.h",
                 "report_util.c"]),
    ("model", ["model.c"]),
    ("steps", ["model_build.h", "model_threads.c", "model_stalls.c", "model_slow_calls.c", "model_sites.c",
               "pools.c", "locks.c", "model_holders.c", "model_feeders.c", "queues.c", "diagnosis.c"]),
    ("helpers", ["model.h", "model_helpers.h", "model_stack.c", "model_lookup.c", "frames.h",
                 "frames.c", "pyframes.h", "pyframes.c"]),
    ("reader", ["dump.h", "dump.c", "symbolize.h", "symbolize.c", "pycode.h", "pycode.c",
                "rbcode.h", "rbcode.c", "grow.h"]),
]

WORD = re.compile(r"[A-Za-z_]\w*")
# A function definition: a name and its parameters at the start of a line,
# then (after the parameters) an opening brace on the next lines.
DEFINITION = re.compile(r"^(?!static\b)[A-Za-z_][\w \t\*]*?\b([A-Za-z_]\w*)\s*\([^;{]*?\)\s*\{",
                        re.M | re.S)
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def strip(text):
    """The source without comments, strings and character constants."""
    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
                  lambda m: "" if m.group(0).startswith("/") else '""', text, flags=re.S)


def layer_of():
    return {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def graph(directory):
    """{file: {file it uses: why}} and the problems found reading them."""
    files = sorted(f for f in os.listdir(directory) if f.endswith((".c", ".h")))
    text = {}
    for f in files:
        with open(os.path.join(directory, f), encoding="utf-8", errors="replace") as fh:
            raw = fh.read()
        text[f] = (raw, strip(raw))
    owner = {}
    for f in files:
        if f.endswith(".c"):
            for m in DEFINITION.finditer(text[f][1]):
                owner.setdefault(m.group(1), f)
    uses = {f: {} for f in files}
    for f in files:
        raw, code = text[f]
        for inc in INCLUDE.findall(raw):
            if inc in text and inc != f:
                uses[f].setdefault(inc, "includes " + inc)
        if not f.endswith(".c"):
            continue           # a header declares; the files that include it use
        for word in set(WORD.findall(code)):
            other = owner.get(word)
            if other and other != f:
                uses[f].setdefault(other, "uses " + word + "()")
    return files, uses


def circles(uses):
    """Each strongly connected set of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(uses.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(uses):
        if v not in index:
            visit(v)
    return out


def problems(directory):
    files, uses = graph(directory)
    rank = layer_of()
    found = []
    for f in files:
        if f not in rank:
            found.append("%s: not in LAYERS of scripts/check_layers.py (add it to its layer)" % f)
    for f in files:
        for other, why in sorted(uses[f].items()):
            if f in rank and other in rank and rank[other] < rank[f]:
                found.append("%s (%s) %s of %s (%s): an upward dependency" %
                             (f, LAYERS[rank[f]][0], why, other, LAYERS[rank[other]][0]))
    for group in circles(uses):
        path = []
        for f in group:
            nxt = [o for o in group if o in uses[f]]
            path.append("%s -> %s (%s)" % (f, nxt[0], uses[f][nxt[0]]))
        found.append("a circle: " + "; ".join(path))
    return found


def self_test():
    """A planted circle, an upward call and an unknown file are each caught,
    and a clean one-way tree passes."""
    with tempfile.TemporaryDirectory() as d:
        def write(name, body):
            with open(os.path.join(d, name), "w") as fh:
                fh.write(body)

        write("dump.c", "int dump_open(void)\n{\n    return 0;\n}\n")
        write("model.c", "int model_build(void)\n{\n    return dump_open();\n}\n")
        write("report_text.c", "/* model_build() in a comment is no use */\n"
                               "int report_text(void)\n{\n    return model_build();\n}\n")
        clean = problems(d)
        assert clean == [], clean
        # steps -> model (upward) and model -> steps: a circle as well.
        write("pools.c", "int model_build_pools(void)\n{\n    return model_build();\n}\n")
        write("model.c", "int model_build(void)\n{\n    return dump_open() + model_build_pools();\n}\n")
        found = problems(d)
        assert any("upward" in p and p.startswith("pools.c") for p in found), found
        assert any(p.startswith("a circle") and "model.c" in p and "pools.c" in p for p in found), found
        # A circle inside one layer, with no upward use.
        write("model.c", "int model_build(void)\n{\n    return dump_open();\n}\n")
        write("pools.c", "int model_build_pools(void)\n{\n    return model_build_locks();\n}\n")
        write("locks.c", "int model_build_locks(void)\n{\n    return model_build_pools();\n}\n")
        found = problems(d)
        assert len(found) == 1 and found[0].startswith("a circle") and "locks.c" in found[0], found
        os.remove(os.path.join(d, "locks.c"))
        write("pools.c", "int model_build_pools(void)\n{\n    return 0;\n}\n")
        write("model_new.c", "int x(void)\n{\n    return 0;\n}\n")
        found = problems(d)
        assert found == ["model_new.c: not in LAYERS of scripts/check_layers.py (add it to its layer)"], found
    print("check_layers self-test: a planted circle, an upward call and an unknown file are caught")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    here = os.path.dirname(os.path.abspath(__file__))
    directory = argv[1] if len(argv) > 1 else os.path.join(here, "..", "analyzer")
    found = problems(directory)
    for p in found:
        print("check_layers: " + p)
    if found:
        return 1
    print("check_layers: %s flows one way: %s" % (os.path.normpath(directory),
                                                  " -> ".join(name for name, _ in LAYERS)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
