#!/usr/bin/env bash
# Run the benchmarks on this machine and collect their outputs in bench/out/ (gitignored).
#
#   bench/run_all.sh                  network + vs-unet + profile (CPU: about 10-15 min on 2 cores)
#   bench/run_all.sh --equal-budget   ... then the equal wall-clock training comparison (CPU: + about 35-45 min)
#   bench/run_all.sh --quick          tiny inputs, one repeat: checks that everything runs (about 2 min)
#   bench/run_all.sh --device cpu     force a device (default: cuda when available)
#
# PYTHON selects the interpreter (default: the repo's .venv, else python3).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

equal_budget=0
quick=0
device_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --equal-budget) equal_budget=1 ;;
        --quick) quick=1 ;;
        --device) device_args=(--device "$2"); shift ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

OUT=bench/out
mkdir -p "$OUT"
if [[ $quick -eq 1 ]]; then
    tiny=(--warmup 0 --threads 1)
    network_args=("${tiny[@]}" --encoders resnet18 --sizes 64 --batch 1 --repeats 1 --filter-base 64 --lossnet)
    vs_args=("${tiny[@]}" --image-size 64 64 --num-images 20 --encoders resnet18 --batch 1 --repeats 1)
    profile_args=("${tiny[@]}" --encoder resnet18 --size 64 --batch 1 --steps 1)
    budget_args=(--limit 30 --resize 64 64 --budget-min 0.5 --iters-per-epoch 2 --val-iters 1
                 --work-dir "$OUT/equal_budget_quick_work")
else
    network_args=(--lossnet)
    vs_args=()
    profile_args=()
    budget_args=()
fi

run() {  # name, command...: tee stdout+stderr into $OUT/<name>.log and time it
    local name=$1; shift
    echo "=== $name: $*"
    local start=$SECONDS
    "$@" 2>&1 | tee "$OUT/$name.log"
    echo "=== $name done in $((SECONDS - start)) s"
}

run network "$PYTHON" bench/bench_network.py "${device_args[@]}" "${network_args[@]}" \
    --out "$OUT/network.md" --json "$OUT/network.json"
run vs_unet "$PYTHON" bench/bench_vs_unet.py "${device_args[@]}" "${vs_args[@]}" \
    --out "$OUT/vs_unet.md" --json "$OUT/vs_unet.json"
profile_device=("${device_args[@]}")
[[ ${#profile_device[@]} -eq 0 ]] && profile_device=(--device cpu)  # the profile is about the CPU step by default
run profile "$PYTHON" bench/profile_step.py "${profile_device[@]}" "${profile_args[@]}" \
    --out "$OUT/profile.md" --json "$OUT/profile.json"
if [[ $equal_budget -eq 1 ]]; then
    run equal_budget "$PYTHON" bench/equal_budget.py "${device_args[@]}" "${budget_args[@]}" \
        --out "$OUT/equal_budget.md" --json "$OUT/equal_budget.json"
fi
echo "outputs: $OUT/*.md (tables), *.json (raw numbers), *.log (console)"
