#!/usr/bin/env bash
# Rerun the benchmarks of bench/RESULTS.md on this machine; tables, JSON and logs go to bench/out/ (gitignored).
#
#   bench/run_all.sh                  RESULTS sections 1 (bench_network.py), 3 (profile_step.py) and 7
#                                     (speed_table.py, which also measures today's rows of section 2)
#   bench/run_all.sh --accuracy       ... then section 6: every accuracy.py command listed below (hours on a
#                                     CPU; needs the project's research data, skipped without it)
#   bench/run_all.sh --quick          tiny inputs, one repeat: checks that everything runs (--accuracy: dry runs)
#   bench/run_all.sh --device cpu     force a device (default: cuda when available)
#
# Not rerun: section 2 (made by bench_vs_unet.py of 0.1.0-0.8.0, folded into speed_table.py: its cases 2d_352
# and 3d_hippo are the same comparisons today), section 4 (timings of code paths since removed) and section 5
# (made by equal_budget.py of 0.1.0, removed; `accuracy.py kvasir --equal-time` asks the same question).
# PYTHON selects the interpreter (default: the repo's .venv, else python3).
set -euo pipefail

cd "$(dirname "$0")/.."
# RESULTS section 6, one line per accuracy.py command: the work folder (runs of one folder reuse each other's
# trainings, as in RESULTS; "fresh" marks the replicates RESULTS ran in a fresh folder), the RESULTS
# subsection, then the arguments. Every run is 6 epochs x 25 iterations unless the line says otherwise (a later
# --epochs/--iters wins).
# Where a trainer's network has changed since the run, the line names today's trainer of the measured network:
# the 3D recipe of 0.3.0-0.5.0 is M2SAbl_DS_bench, the 6.5 candidates are the *_deeper rows.
ACCURACY_RUNS='
main 6.1 kvasir --no-test --models nnUNetTrainer_bench M2SAbl_res2net_bench M2SAbl_resnet18_bench M2SAbl_base_bench M2SAbl_refine_bench M2SAbl_DS_bench M2SAbl_nnunetopt_bench M2SAbl_structure_bench M2SAbl_batchnorm_bench M2SAbl_blocks1_bench M2SAbl_DS_refine_bench M2SAbl_DS_structure_bench
main 6.1 kvasir --no-test --seeds 1 --models nnUNetTrainer_bench M2SAbl_base_bench
main 6.2 kvasir --models nnUNetTrainer_bench M2SAbl_DS_refine_bench M2SAbl_DS_bench
main 6.2 busi --models nnUNetTrainer_bench M2SAbl_DS_refine_bench M2SAbl_DS_bench
main 6.2 covid --models nnUNetTrainer_bench M2SAbl_DS_bench M2SAbl_DS_refine_bench
main 6.2 hippocampus --batch 2 --models nnUNetTrainer_bench M2SAbl_DS_bench
main 6.3 kvasir --models nnUNetTrainer_bench nnUNetTrainer_bench@resencm M2SAbl_DS_bench M2SAbl_DS_bench@resencm
main 6.3 covid --seeds 0 1 --models nnUNetTrainer_bench nnUNetTrainer_bench@resencm M2SAbl_DS_bench M2SAbl_DS_bench@resencm
fresh_busi 6.3 busi --models nnUNetTrainer_bench nnUNetTrainer_bench@resencm M2SAbl_DS_bench M2SAbl_DS_bench@resencm
fresh_hippocampus 6.3 hippocampus --batch 2 --models nnUNetTrainer_bench nnUNetTrainer_bench@resencm M2SAbl_DS_bench
fresh_hippocampus 6.3 hippocampus --batch 2 --models nnUNetTrainer_bench@resencm M2SNetTrainer_scratch_bench@resencm
main 6.4 covid --seeds 0 1 --models nnUNetTrainer_bench M2SAbl_DS_bench M2SAbl_DS_refine_bench
main 6.4 covid --no-test --fold 1 --models nnUNetTrainer_bench M2SAbl_DS_bench M2SAbl_DS_refine_bench
main 6.4 covid --no-test --fold 2 --models nnUNetTrainer_bench M2SAbl_DS_bench M2SAbl_DS_refine_bench
main 6.4 busi --no-test --fold 1 --models nnUNetTrainer_bench M2SAbl_DS_bench M2SAbl_DS_refine_bench
fresh_covid 6.4 covid --seeds 0 1 2 3 --models nnUNetTrainer_bench M2SAbl_DS_bench
main 6.5 hippocampus --batch 2 --models nnUNetTrainer_bench M2SAbl_DS_bench M2SAbl_DS_deeper_bench M2SAbl_DS_refine_deeper_bench
fresh_hippocampus 6.6 hippocampus --batch 2 --equal-time --models M2SAbl_DS_bench nnUNetTrainer_bench
fresh_kvasir 6.6 kvasir --no-test --equal-time --models nnUNetTrainer_bench M2SAbl_res2net_bench M2SAbl_blocks1_bench
fresh_hippocampus 6.7 hippocampus --batch 2 --equal-time --models M2SAbl_DS_bench M2SAbl_DS_deeper_bench M2SAbl_DS_refine_deeper_bench
fresh_hippocampus 6.7 hippocampus --batch 2 --iters 84 --models M2SAbl_DS_deeper_bench
curve 6.8 kvasir --epochs 24 --iters 50 --score-at 150 300 600 1200 --models nnUNetTrainer_bench M2SNetTrainer_scratch_bench
curve 6.8 busi --epochs 24 --iters 50 --score-at 150 300 600 1200 --models nnUNetTrainer_bench M2SNetTrainer_scratch_bench
curve 6.8 hippocampus --batch 2 --equal-time --time-probe 1 --epochs 24 --iters 50 --score-at 150 300 600 1200 --models nnUNetTrainer_bench M2SNetTrainer_scratch_bench
curve 6.8 kvasir --fold 1 --epochs 24 --iters 50 --models nnUNetTrainer_bench M2SNetTrainer_scratch_bench
'
OUT=bench/out
accuracy_commands() {  # "section arguments" per run, the arguments complete
    while read -r work section dataset args; do
        [[ -z "$work" ]] || echo "$section $dataset --epochs 6 --iters 25 $args --work-dir $OUT/accuracy_work_$work"
    done <<< "$ACCURACY_RUNS"
}

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

accuracy=0
quick=0
device_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --accuracy) accuracy=1 ;;
        --quick) quick=1 ;;
        --device) device_args=(--device "$2"); shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
                   echo "Section 6 (--accuracy), in this order:"
                   accuracy_commands | sed 's/^\([^ ]*\) /  [\1] python bench\/accuracy.py /'; exit 0 ;;
        *) echo "run_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

mkdir -p "$OUT"
network_args=(--lossnet) profile_args=() speed_args=() accuracy_args=()
if [[ $quick -eq 1 ]]; then
    tiny=(--warmup 0 --threads 1)
    network_args=("${tiny[@]}" --encoders resnet18 --sizes 64 --batch 1 --repeats 1 --filter-base 64 --lossnet)
    profile_args=("${tiny[@]}" --encoder resnet18 --size 64 --batch 1 --steps 1)
    speed_args=(--quick) accuracy_args=(--dry-run)
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
profile_device=("${device_args[@]}")
[[ ${#profile_device[@]} -eq 0 ]] && profile_device=(--device cpu)  # the profile is about the CPU step by default
run profile "$PYTHON" bench/profile_step.py "${profile_device[@]}" "${profile_args[@]}" \
    --out "$OUT/profile.md" --json "$OUT/profile.json"
run speed_table "$PYTHON" bench/speed_table.py "${device_args[@]}" "${speed_args[@]}" \
    --out "$OUT/speed_table.md" --json "$OUT/speed_table.json"

if [[ $accuracy -eq 1 ]]; then
    n=0
    while read -r section args; do
        n=$((n + 1))
        # shellcheck disable=SC2086  # $args is a list of words on purpose
        run "accuracy_${n}_$section" "$PYTHON" bench/accuracy.py $args "${device_args[@]}" "${accuracy_args[@]}" \
            --out "$OUT/accuracy_${n}_$section.md" --json "$OUT/accuracy_${n}_$section.json" < /dev/null
    done < <(accuracy_commands)
    # section 6.1's step times: every screened network on the screen's own plans, batch 12, one process
    plans="$OUT/accuracy_work_main/nnUNet_preprocessed/Dataset611_AccKvasir/BenchPlans.json"
    if [[ -f "$plans" ]]; then
        screened=$(accuracy_commands | head -1 | sed 's/.*--models nnUNetTrainer_bench \([^-]*\) --work-dir.*/\1/')
        # shellcheck disable=SC2086  # $screened is a list of trainer names on purpose
        run step_times_6.1 "$PYTHON" bench/speed_table.py "${device_args[@]}" "${speed_args[@]}" --plans "$plans" \
            --batch 12 --trainers $screened --out "$OUT/step_times_6.1.md" --json "$OUT/step_times_6.1.json"
    else
        echo "=== step_times_6.1: skipped ($plans is made by the first 6.1 run)"
    fi
fi
echo "outputs: $OUT/*.md (tables), *.json (raw numbers), *.log (console)"
