#!/usr/bin/env bash
# Storage benchmark: hylab data against rclone (Debian's) on the same s3rver, in one run:
# cold download of one large object and of 2,000 small ones, a sync (upload) of a
# 2,000-file tree, warm (cached) reads against `cat` of a local file, and one plain curl
# GET of the large object (the server's single-stream limit), and plain `curl --parallel`
# for the small ones, unsigned and signed (the server's limit for many small objects, for any
# client and for one that signs its requests). Each figure is the median of
# ROUNDS rounds (hylab, rclone and the others in an order that turns each round): this machine's speed drifts.
# Usage: [BENCH_FS=ext4] bench/storage/run.sh [HYLAB_BINARY] [ROUNDS] [BIG_MIB]
# BENCH_FS=ext4 (needs root): every file of the run (s3rver's, the caches, the outputs) on a
# fresh ext4 file system made for it on a loop device, as mkfs.ext4 and Debian's installer
# make one (with a journal). Without it, under $TMPDIR, whatever that is: on this project's
# VMs an ext4 without a journal, where each new file costs a scan of the inodes deleted in
# the last minutes (ext4's recently_deleted(), consulted only without a journal), and every
# round deletes the last one's thousands of files.
set -euo pipefail
cd "$(dirname "$0")/../.."
HYLAB=$(realpath "${1:-build/bench/src/cli/hylab}")
ROUNDS=${2:-3}
BIG_MIB=${3:-1024}
SMALL=2000
PAR=16
for tool in node rclone curl python3; do
  command -v $tool >/dev/null || { echo "error: $tool is missing (make bench installs it)" >&2; exit 1; }
done
S3RVER=tests/s3rver/node_modules/s3rver/bin/s3rver.js
[[ -f $S3RVER ]] || { echo "error: $S3RVER is missing (scripts/install-deps.sh bench)" >&2; exit 1; }
tmp=$(mktemp -d)
pid=
img=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true
  if [[ -n $img ]]; then umount "$tmp" 2>/dev/null || true; rm -f "$img"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
if [[ ${BENCH_FS:-} == ext4 ]]; then
  img=$tmp.img
  truncate -s $((BIG_MIB * 8 + 4096))M "$img"
  mkfs.ext4 -q -F "$img"
  mount -o loop "$img" "$tmp" || { echo "error: BENCH_FS=ext4 needs root (mount -o loop)" >&2; exit 1; }
fi
dev=$(df --output=source "$tmp" | tail -1)
journal=$([[ -e /proc/fs/jbd2/$(basename "$dev")-8 ]] && echo "with a journal" || echo "without a journal")
echo "files under $tmp: $(df --output=fstype "$tmp" | tail -1) on $dev, $journal" >&2

NODE_OPTIONS=--openssl-legacy-provider node "$S3RVER" -d "$tmp/s3" -a 127.0.0.1 -p 0 --silent \
  --configure-bucket bench > "$tmp/s3rver.log" 2>&1 & pid=$!
for _ in $(seq 1 500); do grep -q "listening" "$tmp/s3rver.log" 2>/dev/null && break; sleep 0.02; done
PORT=$(grep -o '127.0.0.1:[0-9]*' "$tmp/s3rver.log" | head -1 | cut -d: -f2)
[[ -n $PORT ]] || { echo "error: s3rver did not start: $(cat "$tmp/s3rver.log")" >&2; exit 1; }
EP=http://127.0.0.1:$PORT

export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
cat > "$tmp/hylab.yaml" <<CONF
storage:
  endpoint_url: $EP
  cache_dir: $tmp/cache
  cache_max_size: 4GiB
  parallel: $PAR
CONF
hy() { "$HYLAB" --config "$tmp/hylab.yaml" data "$@"; }
# rclone from the environment only (no config file); Debian's 1.60 fails while
# AWS_CA_BUNDLE is set, whatever the endpoint.
export RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER=Other RCLONE_CONFIG_S3_ENDPOINT=$EP
export RCLONE_CONFIG_S3_ACCESS_KEY_ID=S3RVER RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=S3RVER
export RCLONE_CONFIG_S3_FORCE_PATH_STYLE=true RCLONE_CONFIG=/dev/null
rc() { env -u AWS_CA_BUNDLE rclone "$@" --transfers $PAR --checkers $PAR; }

echo "preparing: one ${BIG_MIB} MiB object, $SMALL small objects (1-64 KiB)" >&2
head -c $((BIG_MIB << 20)) /dev/urandom > "$tmp/big.bin"
python3 - "$tmp/tree" $SMALL <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2]); random.seed(1)
for i in range(n):
    d = os.path.join(root, f"d{i % 20:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:04}.bin"), "wb") as f:
        f.write(os.urandom(random.randint(1024, 64 * 1024)))
PY
hy put "$tmp/big.bin" s3://bench/big.bin > /dev/null
hy sync "$tmp/tree" s3://bench/small > /dev/null
# The same 2,000 objects with plain curl, 16 at a time over kept-alive connections (one
# process, no checks, no cache): the server's limit for many small objects.
(cd "$tmp/tree" && find . -type f | sort | while read -r f; do
  printf 'url = "%s/bench/small/%s"\noutput = "%s"\n' "$EP" "${f#./}" "${f#./}"; done) > "$tmp/curl-small.cfg"
curl_small() {  # dest [curl args]
  local dest=$1; shift
  mkdir -p "$dest" && (cd "$dest" && curl -sf "$@" --parallel --parallel-max $PAR --create-dirs -K "$tmp/curl-small.cfg")
}
# The same, each request signed (SigV4, as hylab and rclone sign theirs): the server's limit
# for clients that must sign.
SIGNED=(--aws-sigv4 aws:amz:us-east-1:s3 --user S3RVER:S3RVER -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")

now() { date +%s.%N; }
declare -A T
timeit() {  # name command...
  local name=$1; shift
  sync; local t0; t0=$(now)
  "$@" > /dev/null 2>&1 || { echo "error: $name failed: $*" >&2; "$@" >&2 || true; exit 1; }
  local t1; t1=$(now)
  T[$name]+="$(python3 -c "print($t1-$t0)") "
}
# Each group's runs take turns being first in a round: on an ext4 without a journal, the
# first to create files after the round's deletions pays the most (see above).
rotated() {  # round name... : the names, turned by the round
  local r=$1; shift
  local n=$# names=("$@")
  for ((j = 0; j < n; j++)); do echo "${names[$(( (j + r - 1) % n ))]}"; done
}
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r of $ROUNDS" >&2
  rm -rf "$tmp/out"*; hy cache clear > /dev/null
  for m in $(rotated "$r" big_hylab big_rclone big_curl big_nocache); do
    case $m in
      big_hylab) timeit big_hylab hy get s3://bench/big.bin "$tmp/out-h.bin" ;;
      big_rclone) timeit big_rclone rc copyto s3:bench/big.bin "$tmp/out-r.bin" ;;
      big_curl) timeit big_curl curl -sf -o "$tmp/out-c.bin" "$EP/bench/big.bin" ;;
      big_nocache) timeit big_nocache hy get s3://bench/big.bin "$tmp/out-n.bin" --no-cache ;;
    esac
  done
  cmp -s "$tmp/big.bin" "$tmp/out-h.bin" || { echo "error: hylab's copy differs" >&2; exit 1; }
  for m in $(rotated "$r" small_hylab small_rclone small_nocache small_curl small_signed); do
    case $m in
      small_hylab) timeit small_hylab hy get s3://bench/small/ "$tmp/out-hs" ;;
      small_rclone) timeit small_rclone rc copy s3:bench/small "$tmp/out-rs" ;;
      small_nocache) timeit small_nocache hy get s3://bench/small/ "$tmp/out-ns" --no-cache ;;
      small_curl) timeit small_curl curl_small "$tmp/out-cs" ;;
      small_signed) timeit small_signed curl_small "$tmp/out-ss" "${SIGNED[@]}" ;;
    esac
  done
  diff -rq "$tmp/tree" "$tmp/out-cs" > /dev/null || { echo "error: curl's copy differs" >&2; exit 1; }
  diff -rq "$tmp/tree" "$tmp/out-ss" > /dev/null || { echo "error: signed curl's copy differs" >&2; exit 1; }
  diff -rq "$tmp/tree" "$tmp/out-hs" > /dev/null || { echo "error: hylab's copy differs" >&2; exit 1; }
  for m in $(rotated "$r" hylab rclone); do
    case $m in
      hylab) timeit sync_hylab hy sync "$tmp/tree" "s3://bench/up-h$r"
             timeit resync_hylab hy sync "$tmp/tree" "s3://bench/up-h$r" ;;
      rclone) timeit sync_rclone rc sync "$tmp/tree" "s3:bench/up-r$r"
              timeit resync_rclone rc sync "$tmp/tree" "s3:bench/up-r$r" ;;
    esac
  done
  # Warm: the object is in hylab's cache and the file in the page cache; both read into a pipe.
  cat "$tmp/big.bin" > /dev/null
  timeit warm_hylab bash -c "'$HYLAB' --config '$tmp/hylab.yaml' data get s3://bench/big.bin - | wc -c"
  timeit warm_cat bash -c "cat '$tmp/big.bin' | wc -c"
done

median() { python3 -c "import statistics,sys; print(f'{statistics.median(float(x) for x in sys.argv[1:]):.3f}')" $1; }
row() {  # label hylab-key peer-key peer-name
  local h p; h=$(median "${T[$2]}"); p=$(median "${T[$3]}")
  printf "%-34s %9s s %9s s   %-7s %5.2fx\n" "$1" "$h" "$p" "$4" "$(python3 -c "print($p/$h)")"
}
echo
echo "s3rver on loopback, $PAR transfers at once, median of $ROUNDS interleaved rounds"
echo "files on $(df --output=fstype "$tmp" | tail -1) ($dev, $journal)"
printf "%-34s %11s %11s   %-7s %6s\n" "" "hylab" "peer" "peer" "speedup"
row "cold get, one ${BIG_MIB} MiB object" big_hylab big_rclone rclone
row "  same, --no-cache" big_nocache big_rclone rclone
row "cold get, $SMALL small objects" small_hylab small_rclone rclone
row "  same, --no-cache" small_nocache small_rclone rclone
row "sync up, $SMALL-file tree" sync_hylab sync_rclone rclone
row "sync up again, nothing changed" resync_hylab resync_rclone rclone
row "warm read ${BIG_MIB} MiB into a pipe" warm_hylab warm_cat cat
row "one plain curl GET vs hylab get" big_hylab big_curl curl
row "  vs hylab get --no-cache" big_nocache big_curl curl
row "curl --parallel $PAR, $SMALL small objects" small_hylab small_curl curl
row "  vs hylab get --no-cache" small_nocache small_curl curl
row "  same, requests signed" small_hylab small_signed curl
row "    vs hylab get --no-cache" small_nocache small_signed curl
row "signed curl vs rclone (the ceiling)" small_signed small_rclone rclone
# Each round's own ratio (same round, next to each other in time): the spread is the noise.
per_round() {  # label hylab-key peer-key
  python3 - "$1" "${T[$2]}" "${T[$3]}" <<'PY'
import sys
h = [float(x) for x in sys.argv[2].split()]; p = [float(x) for x in sys.argv[3].split()]
print(f"{sys.argv[1]:34s} " + " ".join(f"{b / a:.2f}x" for a, b in zip(h, p)))
PY
}
echo
echo "each round's speedup, in order:"
per_round "cold get, one ${BIG_MIB} MiB object" big_hylab big_rclone
per_round "cold get, $SMALL small objects" small_hylab small_rclone
per_round "  vs signed curl" small_hylab small_signed
per_round "  --no-cache vs rclone" small_nocache small_rclone
per_round "signed curl vs rclone" small_signed small_rclone
