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
# Also runs the issue's literal check: no `apps::` anywhere in the engine's planes.
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
[[ $status -eq 0 ]] && echo "layering: clean"
exit $status
