#!/usr/bin/env bash
# Download, extract and verify SA-1B with N hosts of a Slurm cluster over one shared ROOT.
#
# Usage (8 hosts; the array size is the number of shards):
#   sbatch --array=0-7 scripts/sa1b-slurm.sh /path/to/segment_anything_links.txt /shared/sa1b
#
# Each array task takes the parts of its shard (--shard auto: part number modulo the array
# size, from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT), downloads them with --extract,
# extracts any that are downloaded but not extracted yet, then verifies its shard. Parts
# are locked one at a time in ROOT/.sa1b/locks/, so tasks never fetch a part twice, a
# requeued or resubmitted task resumes where the last one stopped, and `sa1b status -d
# ROOT` on any host shows every task's progress. Throttle the fleet with %K
# (--array=0-31%8) or SA1B_MAX_SPEED; every sa1b option can be set as SA1B_<OPTION>,
# e.g. SA1B_JOBS=8 SA1B_CONNECTIONS=8 sbatch --array=0-7 scripts/sa1b-slurm.sh ...
# A subset of the dataset: SA1B_PARTS=0-99 (download, extract and verify all honour it;
# without it, verify expects every part of the shard out of all 1,000).
#
# Retries follow sa1b's exit codes:
#   0    done                      -> next step
#   3    some parts failed         -> wait SA1B_RETRY_WAIT s and run again (SA1B_ROUNDS times)
#   4    locked by another run     -> the same: the other run finishes the part, or its lock
#                                     goes stale (2 min without refresh) and this run takes over
#   8    links expired             -> get a fresh links file from Meta's download page and save it
#                                     over LINKS: with SA1B_LINKS_WAIT > 0 the task waits that many
#                                     seconds for the file to change, then resumes; else it exits 8
#   130  interrupted (scancel, time limit, preemption): state is saved; resubmit to resume
#   2 usage, 7 no disk space, 1 internal error: exit at once (a person must look)
# The task exits with the last code: 0 only when its shard is downloaded, extracted and sound.
# Once every task has finished, check the whole dataset once:
#   sbatch --dependency=afterok:<jobid> --wrap "sa1b verify -d /shared/sa1b"
#
#SBATCH --job-name=sa1b
#SBATCH --array=0-7
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=4G
#SBATCH --time=3-00:00:00
#SBATCH --output=sa1b-%A_%a.log

set -u -o pipefail

LINKS=${1:?usage: sbatch --array=0-N scripts/sa1b-slurm.sh LINKS_FILE ROOT}
ROOT=${2:?usage: sbatch --array=0-N scripts/sa1b-slurm.sh LINKS_FILE ROOT}
SA1B=${SA1B_BIN:-sa1b}
ROUNDS=${SA1B_ROUNDS:-10}
RETRY_WAIT=${SA1B_RETRY_WAIT:-300}
LINKS_WAIT=${SA1B_LINKS_WAIT:-0}

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) sa1b-slurm[${SLURM_ARRAY_TASK_ID:-?}]: $*" >&2; }

links_mtime() { stat -c %Y "$LINKS" 2>/dev/null || echo 0; }

# Wait until LINKS is replaced (its mtime changes); fails after LINKS_WAIT seconds.
wait_for_fresh_links() {
    local before waited=0
    before=$(links_mtime)
    log "links expired: save a fresh links file from https://ai.meta.com/datasets/segment-anything-downloads over $LINKS (waiting up to ${LINKS_WAIT}s)"
    while (( waited < LINKS_WAIT )); do
        sleep 60
        waited=$((waited + 60))
        if [[ $(links_mtime) != "$before" ]]; then
            sleep 5  # let the writer finish
            return 0
        fi
    done
    return 1
}

rc=1
for (( round = 1; round <= ROUNDS; round++ )); do
    "$SA1B" download "$LINKS" -d "$ROOT" --shard auto --extract
    rc=$?
    if (( rc == 0 )); then
        # download --extract skips parts downloaded earlier without their extraction (a kill
        # mid-extraction, a full disk): extract catches those up; extracted parts cost a stat.
        # Without SA1B_PARTS: extract refuses a --parts range naming parts not on disk yet,
        # and other tasks' parts may still be downloading. It only touches downloaded parts.
        SA1B_PARTS= "$SA1B" extract -d "$ROOT" --shard auto
        rc=$?
    fi
    case $rc in
        0) break ;;
        3|4) log "round $round/$ROUNDS ended with exit $rc; again in ${RETRY_WAIT}s" ;;
        8) if (( LINKS_WAIT > 0 )) && wait_for_fresh_links; then
               log "fresh links file found; resuming"
               continue
           fi
           log "links expired; get a fresh links file and resubmit"
           exit 8 ;;
        *) log "stopping on exit $rc"
           exit "$rc" ;;
    esac
    (( round < ROUNDS )) && sleep "$RETRY_WAIT"
done
if (( rc != 0 )); then
    log "giving up after $ROUNDS rounds (exit $rc); resubmit to resume"
    exit "$rc"
fi

"$SA1B" verify -d "$ROOT" --shard auto
rc=$?
log "shard verified with exit $rc (0 sound, 5 incomplete, 6 corrupt)"
exit "$rc"
