#!/usr/bin/env bash
# Layering check: every `crate::<module>` path in src/ (code and doc links alike) must point at
# a module of the same or a lower layer. Layers, bottom up:
#   0 calendar json files text (leaf utilities: import nothing from the crate)
#   1 config
#   2 graph adapters        (adapters: the engine's own nodes, built on the node API)
#   3 data control
#   4 observability
#   5 runtime cross_host
#   6 supervisor
#   7 apps                   (applications: use the engine, never used by it)
# Also: no `apps::` anywhere in the engine's planes; the data plane imports nothing of the crate
# but itself (it knows bytes and rings, not nodes, configs or processes); and no two files
# import each other (a module's own direct children using it through `super::` aside: that is
# how a module is split into files).
# Exit 0 when clean; otherwise prints every offending line and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A layer=(
  [calendar]=0 [json]=0 [files]=0 [text]=0
  [config]=1 [graph]=2 [adapters]=2 [data]=3 [control]=3 [observability]=4
  [runtime]=5 [cross_host]=5 [supervisor]=6 [apps]=7
)

status=0
for module in "${!layer[@]}"; do
  if [[ -d "src/$module" ]]; then files=$(find "src/$module" -name '*.rs'); else files="src/$module.rs"; fi
  for file in $files; do
    while IFS=: read -r line used; do
      target=${used#crate::}
      [[ -n "${layer[$target]+x}" ]] || continue
      if (( layer[$target] > layer[$module] )); then
        echo "$file:$line: $module (layer ${layer[$module]}) uses $target (layer ${layer[$target]})"
        status=1
      fi
    done < <(grep -no 'crate::[a-z_]*' "$file" | sort -u)
  done
done

if grep -rn "apps::" src/{config,graph,adapters,data,control,runtime,cross_host,supervisor,observability}; then
  echo "the engine names apps:: (above)"
  status=1
fi
if grep -rno 'crate::[a-z_]*' src/data | grep -v 'crate::data'; then
  echo "the data plane imports from above it (above)"
  status=1
fi

# Files that import each other: every `crate::a::b` and `super::b` path resolved to the file of
# the longest module it names.
if ! python3 - <<'PY'
import os, re, sys
files = {}
for directory, _, names in os.walk("src"):
    for name in names:
        if name.endswith(".rs"):
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, "src")[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = []
            files["::".join(parts)] = path

def resolve(parts):
    for n in range(len(parts), 0, -1):
        key = "::".join(parts[:n])
        if key in files:
            return key
    return None

reference = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")
uses = {}
for module, path in files.items():
    text = re.sub(r"//[^\n]*", "", open(path).read())
    is_dir = path.endswith(("mod.rs", "lib.rs", "main.rs"))
    base = module.split("::") if module else []
    found = set()
    for match in reference.finditer(text):
        parts = [p for p in match.group(2).split("::") if p]
        if match.group(1) == "crate":
            full = parts
        else:
            parent = base[:-1]
            full = parent + parts
            while full and full[0] == "super":
                full, parent = parent[:-1] + full[1:], parent[:-1]
        target = resolve(full)
        if target is not None and target != module:
            found.add(target)
    uses[module] = found

def parent_and_child(a, b):
    return b.rsplit("::", 1)[0] == a if "::" in b else a == ""

pairs = sorted(
    (files[a], files[b])
    for a, targets in uses.items()
    for b in targets
    if a < b and a in uses.get(b, ()) and not parent_and_child(a, b) and not parent_and_child(b, a)
)
for a, b in pairs:
    print(f"{a} and {b} import each other")
sys.exit(1 if pairs else 0)
PY
then
  status=1
fi
[[ $status -eq 0 ]] && echo "layering: clean"
exit $status
