# Shared by the GPU check scripts: `source benchmarks/gpu_common.sh "$@"` sets out (OUTDIR, made),
# py, spintui and runs, and defines step NAME CAP_SECONDS COMMAND... (its log in OUTDIR/NAME.log,
# its exit status and time, then the log's last $TAIL_LINES lines).
set -u
out=${1:?usage: $0 OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
spintui=${SPINTUI:-spintui}
runs=${RUNS_DIR:-$(mktemp -d)}
TAIL_LINES=${TAIL_LINES:-30}

step() {  # step NAME CAP_SECONDS COMMAND...
    local name=$1 cap=$2
    shift 2
    local t0=$SECONDS
    echo "== $name (at most ${cap}s)"
    timeout "$cap" "$@" >"$out/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - t0))s"
    tail -n "$TAIL_LINES" "$out/$name.log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
