#!/usr/bin/env bash
# Nightly batch from cron: resumes tonight's run if an earlier attempt was cut short, keeps the
# last KEEP nights of out dirs, and exits with vidbatch's own exit code (0 all done, 1 some
# failed, 2 bad manifest, 3 key or balance, 130 interrupted) so cron mail or a monitor sees it.
#
#   # crontab -e: every night at 01:30, logs as JSON lines for the log shipper
#   30 1 * * * /opt/vidbatch/nightly.sh /opt/vidbatch/prompts.yaml >>/var/log/vidbatch.jsonl 2>&1
#
# Needs ALLTOKEN_API_KEY in the environment, or VIDBATCH_API_KEY_FILE naming a secret file.
set -euo pipefail

# Every line any vidbatch command writes (stderr, and stdout too) is one JSON object, so the
# whole log reads with jq: `jq -c 'select(.event == "job_failed")' < /var/log/vidbatch.jsonl`.
export VIDBATCH_LOG_FORMAT=json

manifest=${1:?usage: nightly.sh MANIFEST [ROOT]}
root=${2:-/var/lib/vidbatch}
keep=${KEEP:-7}
night=$(date -u +%Y-%m-%d)
out="$root/$night"

mkdir -p "$root"

# Check the manifest before anything is spent; exit 2 on a mistake (each one a JSON record
# with its file, line and field).
vidbatch validate "$manifest"

# Run (or resume: the same --out picks up where an interrupted attempt stopped; finished videos
# are re-verified, submitted tasks are polled, never sent again). Failed jobs of an earlier
# attempt tonight are tried once more.
status=0
vidbatch run "$manifest" \
  --out "$out" \
  --retry-failed \
  --max-fail 20 \
  --progress never \
  --log-format json || status=$?

# Rotate: keep the newest $keep nightly out dirs (named YYYY-MM-DD, so names sort by date).
find "$root" -mindepth 1 -maxdepth 1 -type d -name '????-??-??' -print0 \
  | sort -z -r \
  | tail -z -n +"$((keep + 1))" \
  | xargs -0 -r rm -rf --

# Point "latest" at tonight's out dir for whoever picks the videos up.
ln -sfn "$night" "$root/latest"

# Where the night stands, as one JSON line (how it ended, why, and each state's count).
vidbatch status --out "$out" --json || true
exit "$status"
