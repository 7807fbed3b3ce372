#!/usr/bin/env bash
# One GPU check (fits ~8 minutes on one H100/H200): the CUDA exactness tests of the speed
# options (bf16 vs fp32 masks, batched vs per-object, compiled vs eager), then the speed
# benchmark (tiny and small @1024, 1 and 3 objects: sam2 eager, sam2 vos_optimized, ours
# tsms and tsms_fast, eager and compiled), all into <out>/gpu_check.json.
#
#   bash eval/gpu_check.sh [--out DIR] [--no_install]
#   bash eval/gpu_check.sh --device cpu --dry_run      # the same steps, mini model, on CPU
#
# It installs nothing beyond `pip install -r requirements.txt` (skipped by --dry_run and
# --no_install). Each stage has a time limit; a stage that fails or runs out is recorded in
# the JSON and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
DEVICE=cuda DRY=0 INSTALL=1 OUT="bench/gpu_check_$(date -u +%Y%m%dT%H%M%S)"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --dry_run) DRY=1; INSTALL=0; shift ;;
    --no_install) INSTALL=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "error: unknown argument $1 (use --device, --dry_run, --no_install, --out)" >&2; exit 2 ;;
  esac
done
if [ -e "$OUT/gpu_check.json" ]; then
  echo "error: $OUT/gpu_check.json exists; pass another --out" >&2; exit 2
fi
mkdir -p "$OUT"
STAGES="$OUT/stages.txt"; : > "$STAGES"

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, record its exit code
  local name="$1" limit="$2"; shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name $rc" >> "$STAGES"
  tail -n 25 "$OUT/$name.log"
}

if [ "$INSTALL" = 1 ]; then
  stage install 240 "$PY" -m pip install -q -r requirements.txt
fi

if [ "$DRY" = 1 ]; then
  TEST_FILTER=(-k "not compiled")  # inductor on CPU takes minutes: tests/test_speed_options.py -m slow
  BENCH=(--sizes 128 --frames 10 --repeats 1 --dtypes fp32 bf16 --memories tsms --threads 1)
  STAGE_MODELS=(mini) MEMORY_FRAMES=12 TEST_LIMIT=500 LIMITS=(500)  # shared CPUs: generous
else
  TEST_FILTER=()
  BENCH=(--sizes 1024 --frames 30 --repeats 2 --dtypes bf16 --memories tsms tsms_fast --compile)
  STAGE_MODELS=(tiny small) MEMORY_FRAMES=300 TEST_LIMIT=150 LIMITS=(200 130)  # 8 minutes in all
fi

TSMS_TEST_DEVICE="$DEVICE" stage tests "$TEST_LIMIT" "$PY" -m pytest tests/test_speed_cuda.py -q -p no:cacheprovider \
  "${TEST_FILTER[@]}" --junitxml="$OUT/tests.xml"

for i in "${!STAGE_MODELS[@]}"; do
  model="${STAGE_MODELS[$i]}"
  memory=()
  [ "$i" = 0 ] && memory=(--memory_frames "$MEMORY_FRAMES")  # peak memory on a long video: first model only
  stage "bench_$model" "${LIMITS[$i]}" "$PY" eval/benchmark_speed.py "${BENCH[@]}" --models "$model" \
    --objects 1 3 --device "$DEVICE" "${memory[@]}" --out "$OUT/bench_$model"
done

"$PY" - "$OUT" "$DEVICE" "$DRY" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path

out, device, dry = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
report = {"device": device, "dry_run": dry, "stages": {}, "tests": {"passed": 0, "failed": 0, "skipped": 0, "cases": {}}}
for line in (out / "stages.txt").read_text().split("\n"):
    if line.strip():
        name, rc = line.split()
        report["stages"][name] = int(rc)
if (out / "tests.xml").exists():
    for case in ET.parse(out / "tests.xml").getroot().iter("testcase"):
        outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else (
            "skipped" if case.find("skipped") is not None else "passed")
        report["tests"][outcome] += 1
        report["tests"]["cases"][case.get("name")] = outcome
rows, meta = [], {}
for path in sorted(out.glob("bench_*.json")):
    data = json.loads(path.read_text())
    rows += data["rows"]
    meta = data["meta"]
report["benchmark"] = {"meta": meta, "rows": rows}
report["fps_table"] = [{k: r.get(k) for k in ("model", "image_size", "objects", "predictor", "fps", "speedup_vs_sam2",
                                             "peak_cuda_mb", "peak_rss_mb")} for r in rows]
try:
    import torch
    report["torch"] = torch.__version__
    report["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
except Exception as exc:  # the report still gets written
    report["torch"] = f"unavailable: {exc}"
tmp = out / ".gpu_check.json.tmp"
tmp.write_text(json.dumps(report, indent=2))
tmp.replace(out / "gpu_check.json")
for r in report["fps_table"]:
    print(f"{r['model']:>6} {r['image_size']:>5} {r['objects']} obj  {r['predictor']:<36} {r['fps']:>8.2f} FPS  {r['speedup_vs_sam2']:.2f}x")
print(f"tests: {report['tests']['passed']} passed, {report['tests']['failed']} failed; stages: {report['stages']}")
EOF
echo "wrote $OUT/gpu_check.json"
