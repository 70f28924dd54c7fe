#!/usr/bin/env bash
# Figures of the sozu worker that do not depend on the load of the machine: system calls,
# allocations, packets and CPU time per request, counted by `perf stat` (syscall tracepoints,
# uprobes on the C library's malloc, calloc and realloc, net:net_dev_xmit, task-clock) over a fixed number of requests sent
# by `h2load --h1 -n`, for HTTP keep-alive, HTTPS keep-alive, TCP mode (keep-alive through the
# pipe; and `tcp-connect`: a new client connection per request, so a new backend connection
# each, sent by helper.py's `connects`), HTTP keep-alive with a JSON or the default access log to a file, and the paths of
# the faults scenario: a `latency 0` fault of probability 1 on HTTP and on TCP, a route
# without fault in a worker that has faults, and the two faulted paths again once their
# faults are removed (`*-unfaulted`: the same names, so the same work but the faults'), and
# 1 MiB responses (`1mib`: bodies spliced; `1mib-copied`: copied through 16 KiB buffers,
# `splice_min_body_bytes = 0`; `1mib-bigbuffers`: copied through 256 KiB buffers, larger
# reads and vectored writes; each figure is then per MiB), and HTTP/2 over TLS (`h2`: ALPN h2,
# H2_STREAMS streams at once on each connection, to the same HTTP/1.1 backend; not in the
# default list, name it in SCENARIOS). With hardware counters, also user and kernel
# instructions. An nginx backend answers. See doc/benchmarks.md, "Per request".
#
#   benches/load/per-request.sh                      # builds sozu (release)
#   SOZU_BIN=target/debug/sozu REQUESTS=5000 benches/load/per-request.sh
#   SCENARIOS="http-keepalive" PROFILE=1 benches/load/per-request.sh   # and a perf profile
#   CALLGRIND=1 REQUESTS=5000 benches/load/per-request.sh  # user instructions, under callgrind
#   SCENARIOS="1mib 1mib-copied 1mib-bigbuffers" REQUESTS=1000 benches/load/per-request.sh
#   SCENARIOS=h2 CALLGRIND=1 SOZU_BIN=target/debug/sozu benches/load/per-request.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
helper() { python3 -B "$HERE/helper.py" "$@"; }

REQUESTS=${REQUESTS:-20000}         # requests measured per scenario (after as many to warm up)
CONNECTIONS=${CONNECTIONS:-10}      # h2load connections
H2_STREAMS=${H2_STREAMS:-10}        # h2load streams at once on each connection (scenario h2)
SCENARIOS=${SCENARIOS:-http-keepalive https-keepalive tcp-keepalive tcp-connect logs-json logs-default http-fault http-beside-fault tcp-fault http-unfaulted tcp-unfaulted}
SOZU_BIN=${SOZU_BIN:-}
PROFILE=${PROFILE:-}                # set: also record a profile of each scenario (perf record -g)
CALLGRIND=${CALLGRIND:-}            # set: run sozu under callgrind, count its user instructions
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LIBC=${LIBC:-/lib/x86_64-linux-gnu/libc.so.6}
SYSCALLS=(read readv recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait
    epoll_ctl accept4 connect close shutdown setsockopt clock_gettime)

STARTED_PIDS=()
WORK=

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        read -r -a tree <<<"$(helper tree "$pid" 2>/dev/null || true)"
        kill -TERM "${tree[@]}" 2>/dev/null || true
    done
    [[ -z $WORK || -n ${KEEP_WORK:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() {
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
    PID=$!
    STARTED_PIDS+=("$PID")
}

# wait_answer URL [CURL ARGS...]: waits (60 s at most, 300 s under callgrind) until URL
# answers the backend's token (asked for host ANSWER_HOST, localhost by default).
wait_answer() {
    local url=$1 deadline=$((SECONDS + ${CALLGRIND:+240} + 60)) body
    shift
    while ((SECONDS < deadline)); do
        body=$(curl -sS --max-time 5 -H "Host: ${ANSWER_HOST:-localhost}" "$@" "$url" 2>/dev/null || true)
        [[ $body == "$TOKEN" ]] && return 0
        sleep 0.2
    done
    die "$url does not answer the backend's token (got: ${body:0:200})"
}

install_tools() {
    local packages=()
    command -v perf >/dev/null || packages+=(linux-perf)
    command -v h2load >/dev/null || packages+=(nghttp2-client)
    command -v nginx >/dev/null || packages+=(nginx)
    ((${#packages[@]} == 0)) && return 0
    ((EUID == 0)) || die "missing Debian packages: ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
}

# allocation_events: the perf events that count calls of malloc, calloc and realloc (uprobes,
# added once; they need root).
allocation_events() {
    local function events=()
    for function in malloc calloc realloc; do
        perf probe -l 2>/dev/null | grep -q "probe_libc:$function " ||
            perf probe -q -x "$LIBC" "$function" >/dev/null 2>&1 || die "perf probe $function failed (root needed)"
        events+=("probe_libc:$function")
    done
    local IFS=,
    echo "${events[*]}"
}

write_configs() {
    cat >"$WORK/backend.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/backend.pid;
error_log $WORK/backend-error.log error;
events { worker_connections 10000; }
http {
    access_log off;
    client_body_temp_path $WORK;
    proxy_temp_path $WORK;
    fastcgi_temp_path $WORK;
    uwsgi_temp_path $WORK;
    scgi_temp_path $WORK;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location = / { return 200 "$TOKEN"; }
        location = /1mib { alias $WORK/1mib; }
    }
}
EOF
    head -c 1048576 /dev/urandom >"$WORK/1mib"
    local variant settings faults
    for variant in "${VARIANTS[@]}"; do
        settings= faults=
        case $variant in
            json) settings="access_logs_target = \"file://$WORK/access-json.log\""$'\n''access_logs_format = "json"' ;;
            default) settings="access_logs_target = \"file://$WORK/access-default.log\"" ;;
            faults) faults=$(fault_clusters) ;;
            copied) settings="splice_min_body_bytes = 0" ;;
            bigbuffers) settings="splice_min_body_bytes = 0"$'\n''buffer_size = 262144' ;;
        esac
        read -r http https tcp _ <<<"${PORTS[$variant]}"
        cat >"$WORK/sozu-$variant.toml" <<EOF
command_socket = "$WORK/sozu-$variant.sock"
log_level = "error"
log_target = "stdout"
worker_count = 1
max_connections = 5000
$settings
$WORKER_TIMEOUT

[[listeners]]
protocol = "http"
address = "127.0.0.1:$http"

[[listeners]]
protocol = "https"
address = "127.0.0.1:$https"
certificate = "$ROOT/bin/assets/certificate.pem"
key = "$ROOT/bin/assets/key.pem"
tls_versions = ["TLS_V13"]
cipher_suites = ["TLS13_AES_128_GCM_SHA256"]
groups_list = ["X25519"]
strict_sni_binding = false

[[listeners]]
protocol = "tcp"
address = "127.0.0.1:$tcp"

[clusters.web]
protocol = "http"
frontends = [
  { address = "127.0.0.1:$http", hostname = "localhost" },
  { address = "127.0.0.1:$https", hostname = "localhost" },
]
backends = [{ address = "127.0.0.1:$BACKEND_PORT" }]

[clusters.stream]
protocol = "tcp"
frontends = [{ address = "127.0.0.1:$tcp" }]
backends = [{ address = "127.0.0.1:$BACKEND_PORT" }]
$faults
EOF
    done
}

# remove_faults: removes the faults of the faults variant (once).
remove_faults() {
    [[ -z ${FAULTS_REMOVED:-} ]] || return 0
    "$SOZU_BIN" fault reset -c "$WORK/sozu-faults.toml" >/dev/null || die "sozu fault reset failed"
    FAULTS_REMOVED=1
}

# fault_clusters: the faults variant's additions: an HTTP cluster for `faulted.localhost` on
# the same listener and a TCP listener, each cluster with a `latency 0` fault of probability 1.
fault_clusters() {
    local http tcp_fault
    read -r http _ _ tcp_fault <<<"${PORTS[faults]}"
    cat <<EOF

[[listeners]]
protocol = "tcp"
address = "127.0.0.1:$tcp_fault"

[clusters.faulted]
protocol = "http"
frontends = [{ address = "127.0.0.1:$http", hostname = "faulted.localhost" }]
backends = [{ address = "127.0.0.1:$BACKEND_PORT" }]

[clusters.stream-faulted]
protocol = "tcp"
frontends = [{ address = "127.0.0.1:$tcp_fault" }]
backends = [{ address = "127.0.0.1:$BACKEND_PORT" }]

[[faults]]
name = "zero-latency-http"
cluster_id = "faulted"
type = "latency"
latency = 0
probability = 1

[[faults]]
name = "zero-latency-tcp"
cluster_id = "stream-faulted"
type = "latency"
latency = 0
probability = 1
EOF
}

# worker_of PID: the worker process of the sozu started as PID (its only child).
worker_of() {
    local deadline=$((SECONDS + 30)) child
    while ((SECONDS < deadline)); do
        child=$(pgrep -P "$1" | head -n 1 || true)
        [[ -n $child ]] && {
            echo "$child"
            return
        }
        sleep 0.1
    done
    die "sozu $1 started no worker"
}

# load URL COUNT [HOST]: COUNT requests on CONNECTIONS kept connections (to HOST, localhost by
# default), over HTTP/1.1 or, when CLIENT says so, HTTP/2; fails unless all got a 2xx. With
# NEW_CONNECTIONS set, each request on a new connection instead, CONNECTIONS at a time (URL:
# http://127.0.0.1:PORT/).
CLIENT=(--h1)
load() {
    local out port
    if [[ -n ${NEW_CONNECTIONS:-} ]]; then
        port=${1#http://127.0.0.1:}
        taskset -c "$LOAD_CPU" python3 -B "$HERE/helper.py" connects "${port%/}" "$2" "$CONNECTIONS"
        return
    fi
    out=$(taskset -c "$LOAD_CPU" h2load "${CLIENT[@]}" -n "$2" -c "$CONNECTIONS" -H ":authority: ${3:-localhost}" "$1" 2>&1) ||
        die "h2load failed: ${out: -500}"
    grep -q "status codes: $2 2xx" <<<"$out" || die "not every answer was a 2xx: $(grep -E 'requests:|status codes' <<<"$out")"
}

# instruction_events: user and kernel instructions, when the CPU's counters are exposed (not
# in most virtual machines: then the report shows "-").
instruction_events() {
    perf stat -x, -e instructions:u,instructions:k true 2>&1 >/dev/null | grep -q 'not supported' ||
        echo ",instructions:u,instructions:k"
}

# callgrind_instructions SCENARIO WORKER: the user instructions callgrind counted in WORKER
# since it was zeroed (dumped under SCENARIO's name).
callgrind_instructions() {
    local dump deadline=$((SECONDS + 30))
    callgrind_control -d "$1" "$2" >/dev/null
    # The worker writes the dump once it runs again, after callgrind_control returned.
    while ((SECONDS < deadline)); do
        dump=$(grep -l -s "^desc: Trigger: .*dump $1\$" "$WORK/callgrind.$2".* | head -n 1 || true)
        if [[ -n $dump ]] && grep -q -E '^(summary|totals):' "$dump"; then
            awk '/^(summary|totals):/ { print $2; exit }' "$dump"
            return
        fi
        sleep 0.2
    done
    die "callgrind wrote no dump for $1"
}

# measure SCENARIO WORKER URL [HOST]: counts over REQUESTS requests, one line of RESULTS.
measure() {
    local scenario=$1 worker=$2 url=$3 host=${4:-localhost} events syscall perf_pid
    events="task-clock,$ALLOCATIONS,raw_syscalls:sys_enter,net:net_dev_xmit$INSTRUCTIONS"
    for syscall in "${SYSCALLS[@]}"; do
        events+=",syscalls:sys_enter_$syscall"
    done
    load "$url" "$REQUESTS" "$host"
    [[ -z $CALLGRIND ]] || callgrind_control -z "$worker" >/dev/null
    perf stat -x, -e "$events" -p "$worker" -o "$WORK/$scenario.stat" &
    perf_pid=$!
    sleep 0.5
    load "$url" "$REQUESTS" "$host"
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    local counted=
    [[ -z $CALLGRIND ]] || counted=$(callgrind_instructions "$scenario" "$worker")
    python3 - "$WORK/$scenario.stat" "$scenario" "$REQUESTS" "$counted" >>"$RESULTS" <<'EOF'
import sys
path, scenario, requests, counted = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
counts = {}
if counted:
    counts["instructions_u"] = float(counted)
for line in open(path):
    fields = line.strip().split(",")
    if len(fields) < 3 or line.startswith("#"):
        continue
    name = fields[2]
    if name.startswith("instructions"):
        name = name.replace(":", "_")
    try:
        counts[name.split(":")[-1].replace("sys_enter_", "")] = float(fields[0])
    except ValueError:
        pass
per = lambda *names: sum(counts.get(n, 0) for n in names) / requests
instructions = lambda name: f"{per(name):.0f}" if name in counts else "-"
print(f"{scenario} {per('task-clock') * 1000:.2f} {instructions('instructions_u')} "
      f"{instructions('instructions_k')} {per('malloc', 'calloc', 'realloc'):.2f} "
      f"{per('sys_enter'):.2f} {per('read', 'readv', 'recvfrom', 'recvmsg'):.2f} "
      f"{per('write', 'writev', 'sendto', 'sendmsg'):.2f} {per('epoll_wait', 'epoll_pwait'):.3f} "
      f"{per('epoll_ctl'):.3f} {per('clock_gettime'):.2f} {per('net_dev_xmit'):.2f}")
EOF
    if [[ -n $PROFILE ]]; then
        perf record -g -o "$WORK/$scenario.perf" -p "$worker" >/dev/null 2>&1 &
        perf_pid=$!
        sleep 0.5
        load "$url" "$REQUESTS" "$host"
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        perf report -i "$WORK/$scenario.perf" --no-children --percent-limit 1.5 --stdio -g none \
            2>/dev/null | grep -E '^ +[0-9]' >"$WORK/$scenario.profile" || true
        say "profile of $scenario (self time):"
        cat "$WORK/$scenario.profile" >&2
        # Where the allocations come from: the call chains of malloc, calloc and realloc.
        perf record -e "$ALLOCATIONS" --call-graph dwarf -o "$WORK/$scenario.allocations" \
            -p "$worker" >/dev/null 2>&1 &
        perf_pid=$!
        sleep 0.5
        load "$url" 2000 "$host"
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        perf report -i "$WORK/$scenario.allocations" --no-children --stdio -G \
            2>/dev/null >"$WORK/$scenario.allocations.txt" || true
        say "allocation call chains of $scenario in $WORK/$scenario.allocations.txt"
    fi
}

main() {
    install_tools
    if [[ -z $SOZU_BIN ]]; then
        (cd "$ROOT" && cargo build --release --bin sozu)
        SOZU_BIN=$ROOT/target/release/sozu
    fi
    ALLOCATIONS=$(allocation_events)
    INSTRUCTIONS=$(instruction_events)
    WORK=$(mktemp -d /tmp/sozu-per-request.XXXXXX)
    UNDER=()
    WORKER_TIMEOUT=
    if [[ -n $CALLGRIND ]]; then
        command -v valgrind >/dev/null || die "CALLGRIND needs valgrind (Debian package valgrind)"
        UNDER=(valgrind -q --tool=callgrind --trace-children=yes "--callgrind-out-file=$WORK/callgrind.%p")
        # A worker under callgrind on a loaded machine may take longer than the default 10 s
        # to take its initial state.
        WORKER_TIMEOUT="worker_timeout = 120"
        INSTRUCTIONS=
    fi
    chmod 755 "$WORK"
    TOKEN="backend-$RANDOM$RANDOM"
    RESULTS=$WORK/results.txt
    declare -gA PORTS
    local ports variant scenario http https tcp
    read -r -a ports <<<"$(helper ports 20)"
    BACKEND_PORT=${ports[0]}
    PORTS[quiet]="${ports[*]:1:3}"
    PORTS[json]="${ports[*]:4:3}"
    PORTS[default]="${ports[*]:7:3}"
    # http https tcp, and the TCP listener of the faulted cluster.
    PORTS[faults]="${ports[*]:10:4}"
    PORTS[copied]="${ports[*]:14:3}"
    PORTS[bigbuffers]="${ports[*]:17:3}"
    # The 1 MiB scenarios' own sozus start only when they are measured.
    # Each sozu starts only when a chosen scenario goes through it (under callgrind, starting
    # one takes minutes).
    VARIANTS=(quiet)
    [[ " $SCENARIOS " != *" logs-json "* ]] || VARIANTS+=(json)
    [[ " $SCENARIOS " != *" logs-default "* ]] || VARIANTS+=(default)
    [[ " $SCENARIOS " != *"fault"* ]] || VARIANTS+=(faults)
    [[ " $SCENARIOS " != *" 1mib-copied "* ]] || VARIANTS+=(copied)
    [[ " $SCENARIOS " != *" 1mib-bigbuffers "* ]] || VARIANTS+=(bigbuffers)
    write_configs
    start backend "$LOAD_CPU" nginx -e "$WORK/backend-error.log" -p "$WORK" -c "$WORK/backend.conf"
    declare -A WORKER
    # One after the other: under callgrind, a worker started along with others may take longer
    # than its main process waits for its first answer, and be replaced.
    for variant in "${VARIANTS[@]}"; do
        start "sozu-$variant" "$PROXY_CPU" "${UNDER[@]}" "$SOZU_BIN" start -c "$WORK/sozu-$variant.toml"
        read -r http https tcp _ <<<"${PORTS[$variant]}"
        wait_answer "http://127.0.0.1:$http/"
        WORKER[$variant]=$(worker_of "$PID")
    done
    local fault_http fault_tcp
    read -r fault_http _ _ fault_tcp <<<"${PORTS[faults]}"
    if [[ -n ${WORKER[faults]:-} ]]; then
        wait_answer "http://127.0.0.1:$fault_http/"
        ANSWER_HOST=faulted.localhost wait_answer "http://127.0.0.1:$fault_http/"
        wait_answer "http://127.0.0.1:$fault_tcp/"
    fi
    read -r http https tcp <<<"${PORTS[quiet]}"
    wait_answer "https://127.0.0.1:$https/" -k
    wait_answer "http://127.0.0.1:$tcp/"
    : >"$RESULTS"
    for scenario in $SCENARIOS; do
        say "$scenario: $REQUESTS requests on $CONNECTIONS connections"
        case $scenario in
            http-keepalive) measure "$scenario" "${WORKER[quiet]}" "http://127.0.0.1:$http/" ;;
            https-keepalive) measure "$scenario" "${WORKER[quiet]}" "https://127.0.0.1:$https/" ;;
            h2)
                CLIENT=(-m "$H2_STREAMS")
                measure "$scenario" "${WORKER[quiet]}" "https://127.0.0.1:$https/"
                CLIENT=(--h1)
                ;;
            tcp-keepalive) measure "$scenario" "${WORKER[quiet]}" "http://127.0.0.1:$tcp/" ;;
            tcp-connect) NEW_CONNECTIONS=1 measure "$scenario" "${WORKER[quiet]}" "http://127.0.0.1:$tcp/" ;;
            logs-json | logs-default)
                read -r variant _ _ <<<"${PORTS[${scenario#logs-}]}"
                measure "$scenario" "${WORKER[${scenario#logs-}]}" "http://127.0.0.1:$variant/"
                ;;
            http-fault) measure "$scenario" "${WORKER[faults]}" "http://127.0.0.1:$fault_http/" faulted.localhost ;;
            http-beside-fault) measure "$scenario" "${WORKER[faults]}" "http://127.0.0.1:$fault_http/" ;;
            tcp-fault) measure "$scenario" "${WORKER[faults]}" "http://127.0.0.1:$fault_tcp/" ;;
            http-unfaulted | tcp-unfaulted)
                remove_faults
                if [[ $scenario == http-* ]]; then
                    measure "$scenario" "${WORKER[faults]}" "http://127.0.0.1:$fault_http/" faulted.localhost
                else
                    measure "$scenario" "${WORKER[faults]}" "http://127.0.0.1:$fault_tcp/"
                fi
                ;;
            1mib) measure "$scenario" "${WORKER[quiet]}" "http://127.0.0.1:$http/1mib" ;;
            1mib-copied | 1mib-bigbuffers)
                read -r variant _ _ <<<"${PORTS[${scenario#1mib-}]}"
                measure "$scenario" "${WORKER[${scenario#1mib-}]}" "http://127.0.0.1:$variant/1mib"
                ;;
            *) die "unknown scenario $scenario" ;;
        esac
    done
    {
        echo "- $(helper machine); sozu \`$SOZU_BIN\` ($("$SOZU_BIN" --version 2>&1 | head -n 1)) at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown); $(h2load --version | head -n 1); $(nginx -v 2>&1 | cut -d' ' -f3) (backend); $(perf --version)${CALLGRIND:+; $(valgrind --version)}; $REQUESTS requests on $CONNECTIONS connections (h2load --h1; h2: $H2_STREAMS streams at once on each); load average $(cut -d' ' -f1-3 /proc/loadavg)"
        echo
        echo "| scenario | CPU µs | instructions (user) | instructions (kernel) | allocations | system calls | reads | writes | epoll_wait | epoll_ctl | clock_gettime | packets |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        awk '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 }' "$RESULTS"
        echo
        echo "(each figure per request, on the sozu worker; reads and writes on both sides; packets: those the"
        echo "loopback sent while the worker ran, its own and the ones its peers' kernel answered at once)"
    } | tee "$WORK/report.md"
}

main "$@"
