#!/usr/bin/env bash
# The paper-setting ablation (docs/method.md, P1-P3) and the memory-rule table (issue 25),
# in the order that gives whole seeds early: the SAM2 row's trainings, the memory rules on
# them, the paper's other rows, then the paper's rows' seeds 4-5, their
# inference rows, TS isolated, and last the rules' seeds 4-5. Every stage is a Hydra
# multirun of eval/ablation_run.py; rerunning this script continues where it stopped
# (finished jobs are skipped, an interrupted training resumes from its last.pt).
#   nohup bash eval/run_paper_ablation.sh >> runs/ablation_paper.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
JOBS=${JOBS:-2}
LAUNCH=(hydra/launcher=joblib "hydra.launcher.n_jobs=$JOBS")
RULES=surgsam2@sam2,tsms@sam2,tsms_fast@sam2,quality@sam2,tsms_quality@sam2,samurai@sam2,samurai_select@sam2,samurai_mask@sam2,dam4sam@sam2
P1=runs/ablation_paper
stage() { echo "== $(date -u +%H:%M:%S) $*"; "$PY" eval/ablation_run.py -m data=synthetic_paper out=$P1 "$@" "${LAUNCH[@]}"; }
stage seed=1,2,3 row=sam2                       # trainings first: inference rows then never wait on a lock
stage seed=1,2,3 row=$RULES                     # issue 25's table: every memory rule on the SAM2 weights
stage seed=1,2,3 row=ts,ms,tsms
stage seed=4,5 row=sam2,ts,ms,tsms              # P1's trained rows, 5 seeds, before any further scoring
stage seed=1,2,3,4,5 row=tsms_fast,auto,ms_fast,ms_auto
ts_isolated() { echo "== $(date -u +%H:%M:%S) TS isolated $*"; "$PY" eval/ablation_run.py -m data=synthetic_ts_isolated \
    out=runs/ablation_ts_isolated row=sam2,ts,ts_wide "$@" "${LAUNCH[@]}"; }
ts_isolated seed=1,2,3
ts_isolated seed=4,5
stage seed=4,5 row=$RULES                       # the rule table's seeds 4-5 (it stands on 1-3)
echo "== $(date -u +%H:%M:%S) done"
