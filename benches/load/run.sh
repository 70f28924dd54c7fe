#!/usr/bin/env bash
# The load benchmark: this proxy against HAProxy and nginx, each on one pinned core, with wrk and
# an nginx backend on another core. Everything listens on 127.0.0.1, on ports chosen at run time.
# See doc/benchmarks.md for what each scenario means and how to read the figures.
#
#   benches/load/run.sh                       # full run: 3 rounds of 10 s per scenario and proxy
#   ROUNDS=1 DURATION=2 benches/load/run.sh   # a quick look, about a minute
#   SCENARIOS="faults sni-routing h2" ROUNDS=1 DURATION=2 benches/load/run.sh
#   QUICK=1 benches/load/run.sh               # the CI form: fails only on a broken scenario
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
helper() { python3 -B "$HERE/helper.py" "$@"; }

# QUICK=1, the CI form: every scenario but `faults` (and `faults` too once a Toxiproxy is at
# hand: TOXIPROXY_BIN, or one built before in target/bench-tools), one round of 2 s, small
# counts, debug builds, the report in a temporary folder. Each scenario still checks the
# answers of every proxy first: the run fails on a broken scenario, never on a figure.
if [[ -n ${QUICK:-} ]]; then
    : "${ROUNDS:=1}" "${DURATION:=2}" "${BIG_FILE_MB:=10}" "${SCALE_FRONTENDS:=10 100}"
    : "${IDLE_CONNECTIONS:=100}" "${HANDSHAKES:=50}" "${RESULTS_DIR:=$(mktemp -d)}"
    if [[ -z ${SCENARIOS:-} ]]; then
        SCENARIOS="tcp-throughput tcp-connect tcp-keepalive http-keepalive http-close 1mib https-keepalive https-handshake h2 scale logs sni-routing idle handshakes"
        if [[ -n ${TOXIPROXY_BIN:-} ]] || compgen -G "$ROOT/target/bench-tools/toxiproxy-server-*" >/dev/null; then
            SCENARIOS+=" faults"
        fi
    fi
    if [[ -z ${SOZU_BIN:-} ]]; then
        (cd "$ROOT" && cargo build --bin sozu)
        SOZU_BIN=$ROOT/target/debug/sozu SOZU_NOTE="debug build, QUICK"
    fi
    if [[ -z ${HANDSHAKE_CLIENT:-} && " $SCENARIOS " == *" handshakes "* ]]; then
        (cd "$ROOT" && cargo build -p sozu-benches --bin tls-handshakes)
        HANDSHAKE_CLIENT=$ROOT/target/debug/tls-handshakes
    fi
    if [[ -z ${BENCH_BACKEND:-} && " $SCENARIOS " == *" faults "* ]]; then
        (cd "$ROOT" && cargo build -p sozu-benches --bin bench-backend)
        BENCH_BACKEND=$ROOT/target/debug/bench-backend
    fi
fi

ROUNDS=${ROUNDS:-3}                 # rounds; each round runs every proxy once per scenario
DURATION=${DURATION:-10}            # seconds of one measurement
CONNECTIONS=${CONNECTIONS:-50}      # wrk connections
H2_CONNECTIONS=${H2_CONNECTIONS:-10} # h2load connections of the h2 scenario
H2_STREAMS=${H2_STREAMS:-10}        # h2load streams at once on each of them
STREAMS=${STREAMS:-4}               # parallel downloads of the large-transfer scenario
BIG_FILE_MB=${BIG_FILE_MB:-100}     # size of the large file
# faults, sni-routing, idle and handshakes are chosen by name only: they need Toxiproxy's source
# and sslh, many open files, or a client of their own.
SCENARIOS=${SCENARIOS:-tcp-throughput tcp-connect tcp-keepalive http-keepalive http-close 1mib https-keepalive https-handshake h2 scale logs}
PROXIES=${PROXIES:-sozu haproxy nginx}
SCALE_FRONTENDS=${SCALE_FRONTENDS:-1000 100000}  # frontend counts compared by the scale scenario
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-300}          # seconds a proxy may take to answer at start
PROXY_CPU=${PROXY_CPU:-0}           # the core of the proxies
LOAD_CPU=${LOAD_CPU:-1}             # the core of wrk and the backend
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
SOZU_BIN=${SOZU_BIN:-}              # the sozu binary; empty: build it (cargo build --release)
SOZU_NOTE=${SOZU_NOTE:-}            # a note on that binary, written in the report
REALTIME=${REALTIME:-}              # set: proxies, backend and clients run SCHED_FIFO (shared machine)

STARTED_PIDS=()
WORK=

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
selected() { [[ " $SCENARIOS " == *" $1 "* ]]; }

source "$HERE/sozu-only.sh"
source "$HERE/faults.sh"
source "$HERE/sni.sh"
source "$HERE/idle.sh"
source "$HERE/handshakes.sh"

cleanup() {
    local pid tree pids=()
    for pid in "${STARTED_PIDS[@]}"; do
        # Children first gathered (nginx and sozu workers), then every process is asked to stop.
        read -r -a tree <<<"$(helper tree "$pid" 2>/dev/null || true)"
        pids+=("${tree[@]}")
    done
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "${pids[@]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
    if [[ -n $WORK && -z ${KEEP_WORK:-} ]]; then
        rm -rf "$WORK"
    elif [[ -n $WORK ]]; then
        say "work files kept in $WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -------------------------------------------------------------------------------------

# install_packages PACKAGE...: installs those of the Debian packages not installed yet.
install_packages() {
    local package packages=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || packages+=("$package")
    done
    ((${#packages[@]})) || return 0
    if ((EUID != 0)); then
        die "missing Debian packages: ${packages[*]}; install them (apt-get install -y ${packages[*]}) or run as root"
    fi
    say "installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
}

install_tools() {
    local missing=() packages=() tools=(haproxy nginx wrk curl taskset python3 openssl)
    command -v haproxy >/dev/null || packages+=(haproxy)
    command -v nginx >/dev/null || packages+=(nginx)
    [[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || packages+=(libnginx-mod-stream)
    command -v wrk >/dev/null || packages+=(wrk)
    command -v curl >/dev/null || packages+=(curl)
    command -v taskset >/dev/null || packages+=(util-linux)
    command -v python3 >/dev/null || packages+=(python3)
    command -v openssl >/dev/null || packages+=(openssl)
    if selected sni-routing; then
        command -v sslh-ev >/dev/null || command -v sslh-select >/dev/null || packages+=(sslh)
        tools+=(sslh)
    fi
    if selected h2; then
        command -v h2load >/dev/null || packages+=(nghttp2-client)
        tools+=(h2load)
    fi
    ((${#packages[@]} == 0)) || install_packages "${packages[@]}"
    for tool in "${tools[@]}"; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || die "still missing after apt-get: ${missing[*]}"
}

build_sozu() {
    if [[ -n $SOZU_BIN ]]; then
        [[ -x $SOZU_BIN ]] || die "SOZU_BIN=$SOZU_BIN is not an executable"
        return
    fi
    say "building sozu (release)"
    (cd "$ROOT" && cargo build --release --bin sozu)
    SOZU_BIN=$ROOT/target/release/sozu
}

# --- processes ---------------------------------------------------------------------------------

# pinned CPU COMMAND... &: runs COMMAND on CPU, at real-time priority (SCHED_FIFO 10) when
# REALTIME is set, so that other users' processes on a shared machine do not take its core.
# Called in the background only: COMMAND replaces the subshell that runs the call, so that $!
# is COMMAND's own process and the memory and CPU read from its process tree are COMMAND's,
# without a copy of this shell (2–3 MiB RSS, counted before in each proxy's memory).
pinned() {
    local cpu=$1
    shift
    if [[ -n $REALTIME ]]; then
        exec taskset -c "$cpu" chrt -f 10 "$@"
    fi
    exec taskset -c "$cpu" "$@"
}

# start NAME CPU COMMAND...: runs COMMAND pinned to CPU, output to $WORK/NAME.log; sets $PID.
start() {
    local name=$1 cpu=$2
    shift 2
    pinned "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
    PID=$!
    STARTED_PIDS+=("$PID")
}

# wait_answer NAME PID HOST URL [CURL ARGS...]: waits until URL, asked for HOST, answers the
# backend's token, for STARTUP_TIMEOUT seconds or the ANSWER_TIMEOUT given.
wait_answer() {
    local name=$1 pid=$2 host=$3 url=$4 timeout=${ANSWER_TIMEOUT:-$STARTUP_TIMEOUT} body
    local deadline=$((SECONDS + timeout))
    shift 4
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || {
            tail -n 20 "$WORK/$name.log" >&2
            die "$name exited at start (log above)"
        }
        body=$(curl -sS --max-time 5 -H "Host: $host" "$@" "$url" 2>/dev/null || true)
        [[ $body == "$TOKEN" ]] && return 0
        sleep 0.2
    done
    tail -n 20 "$WORK/$name.log" >&2
    die "$name does not answer the backend's answer on $url within ${timeout}s (got: ${body:0:200})"
}

# check_proxy NAME PID: the sanity check of a proxy, on each listener the scenarios use. Once
# the HTTP listener answers, the proxy is up: the others get a few seconds only.
check_proxy() {
    local name=$1 pid=$2 http https tcp checked
    read -r http https tcp <<<"${PORTS[$name]}"
    wait_answer "$name" "$pid" localhost "http://127.0.0.1:$http/"
    checked="http :$http"
    if [[ " ${SCENARIOS} " == *" https-"* ]]; then
        ANSWER_TIMEOUT=10 wait_answer "$name" "$pid" localhost "https://127.0.0.1:$https/" --cacert "$CERT" --tlsv1.3
        checked+=", https :$https"
    fi
    if [[ " ${SCENARIOS} " == *" tcp-"* ]]; then
        ANSWER_TIMEOUT=10 wait_answer "$name" "$pid" localhost "http://127.0.0.1:$tcp/"
        checked+=", tcp :$tcp"
    fi
    if selected 1mib; then
        check_size "$name" "http://127.0.0.1:$http/1mib.bin" 1048576
        checked+=", 1 MiB :$http"
    fi
    if selected tcp-throughput; then
        check_size "$name" "http://127.0.0.1:$tcp/big.bin" $((BIG_FILE_MB * 1048576))
        checked+=", ${BIG_FILE_MB} MB :$tcp"
    fi
    if selected h2; then
        local answer
        answer=$(curl -sS --max-time 5 --http2 -H 'Host: localhost' --cacert "$CERT" -w ' HTTP/%{http_version}' "https://127.0.0.1:$https/" 2>&1) || true
        [[ $answer == "$TOKEN HTTP/2" ]] ||
            die "$name does not answer over HTTP/2 with ALPN h2 on :$https (got: ${answer:0:200})"
        checked+=", h2 :$https"
    fi
    say "$name answers on $checked"
}

# check_size NAME URL BYTES: URL, asked for localhost, answers a 200 of BYTES bytes.
check_size() {
    local answer
    answer=$(curl -sS --max-time 60 -H 'Host: localhost' -o /dev/null -w '%{http_code} %{size_download}' "$2" 2>&1) || true
    [[ $answer == "200 $3" ]] || die "$1 does not answer $2 with a 200 of $3 bytes (got: ${answer:0:200})"
}

# rotation ROUND ITEM...: the items, one a line, rotated by ROUND - 1, so that no item always
# runs first on a cold cache.
rotation() {
    local round=$1
    shift
    local by=$(((round - 1) % $#))
    printf '%s\n' "${@:by+1}" "${@:1:by}"
}

# --- configurations ----------------------------------------------------------------------------

write_backend_config() {
    mkdir -p "$WORK/www" "$WORK/backend"
    truncate -s "${BIG_FILE_MB}M" "$WORK/www/big.bin"
    truncate -s 1M "$WORK/www/1mib.bin"
    cat >"$WORK/backend.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/backend/nginx.pid;
error_log $WORK/backend/error.log error;
worker_rlimit_nofile 65536;
events { worker_connections 40000; }
http {
    access_log off;
    client_body_temp_path $WORK/backend;
    proxy_temp_path $WORK/backend;
    fastcgi_temp_path $WORK/backend;
    uwsgi_temp_path $WORK/backend;
    scgi_temp_path $WORK/backend;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        root $WORK/www;
        default_type text/plain;
        location = / { return 200 "$TOKEN"; }
    }
$(if selected sni-routing; then sni_backend_config; fi)
}
EOF
}

write_sozu_config() {
    local http https tcp
    read -r http https tcp <<<"${PORTS[sozu]}"
    cat >"$WORK/sozu.toml" <<EOF
command_socket = "sozu.sock"
log_level = "error"
log_target = "stdout"
worker_count = 1
max_connections = 5000

[[listeners]]
protocol = "http"
address = "127.0.0.1:$http"

[[listeners]]
protocol = "https"
address = "127.0.0.1:$https"
certificate = "$CERT"
key = "$KEY"
tls_versions = ["TLS_V13"]
cipher_suites = ["TLS13_AES_128_GCM_SHA256"]
groups_list = ["X25519"]
send_tls13_tickets = 0
# Clients reach https://127.0.0.1 with Host: localhost and send no SNI (an IP address is no
# server name); like HAProxy's and nginx's listeners here, this one does not bind names to SNI.
strict_sni_binding = false
$(if selected h2; then echo 'alpn_protocols = ["h2", "http/1.1"]'; fi)

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
EOF
}

write_haproxy_config() {
    local http https tcp
    read -r http https tcp <<<"${PORTS[haproxy]}"
    cat "$CERT" "$KEY" >"$WORK/haproxy.pem"
    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 5000
    tune.ssl.cachesize 0
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
    ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets
    ssl-default-bind-curves X25519

defaults
    timeout connect 3s
    timeout client 60s
    timeout server 30s

frontend http
    mode http
    bind 127.0.0.1:$http
    bind 127.0.0.1:$https ssl crt $WORK/haproxy.pem$(if selected h2; then echo ' alpn h2,http/1.1'; fi)
    default_backend web

frontend tcp
    mode tcp
    bind 127.0.0.1:$tcp
    default_backend stream

backend web
    mode http
    server backend 127.0.0.1:$BACKEND_PORT

backend stream
    mode tcp
    server backend 127.0.0.1:$BACKEND_PORT
EOF
}

write_nginx_config() {
    local http https tcp
    read -r http https tcp <<<"${PORTS[nginx]}"
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log error;
events { worker_connections 10000; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    keepalive_requests 10000000;
    upstream web {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$http;
        listen 127.0.0.1:$https ssl$(if selected h2; then echo ' http2'; fi);
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        ssl_ecdh_curve X25519;
        ssl_session_tickets off;
        ssl_session_cache off;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
stream {
    server {
        listen 127.0.0.1:$tcp;
        proxy_pass 127.0.0.1:$BACKEND_PORT;
    }
}
EOF
}

start_proxy() {
    case $1 in
        sozu) start sozu "$PROXY_CPU" "$SOZU_BIN" start -c "$WORK/sozu.toml" ;;
        haproxy) start haproxy "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" ;;
        nginx) start nginx "$PROXY_CPU" nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx.conf" ;;
        *) die "unknown proxy $1 (PROXIES: sozu haproxy nginx)" ;;
    esac
    PROXY_PID[$1]=$PID
}

# --- measurements ------------------------------------------------------------------------------

# measure SCENARIO PROXY ROUND RESULTS [HOST]: one run of SCENARIO through PROXY (a name of
# PORTS and PROXY_PID), appended to RESULTS as one line of helper.py's COLUMNS.
measure() {
    local scenario=$1 proxy=$2 round=$3 results=$4 host=${5:-localhost}
    local pid=${PROXY_PID[$proxy]} http https tcp load cpu_before cpu_after rss
    local seconds units p50=nan p99=nan errors=0 out=$WORK/run.out
    local wrk=(wrk -t1 "-c$CONNECTIONS" "-d${DURATION}s" --latency -H "Host: $host")
    local close=(-H 'Connection: close') command
    read -r http https tcp <<<"${PORTS[$proxy]}"
    case $scenario in
        tcp-throughput) command=(python3 -B "$HERE/helper.py" stream "$tcp" /big.bin "$STREAMS" "$DURATION") ;;
        tcp-connect) command=("${wrk[@]}" "${close[@]}" "http://127.0.0.1:$tcp/") ;;
        tcp-keepalive) command=("${wrk[@]}" "http://127.0.0.1:$tcp/") ;;
        tcp-pipelined) command=("${wrk[@]}" -s "$HERE/pipeline.lua" "http://127.0.0.1:$tcp/") ;;
        http-keepalive) command=("${wrk[@]}" "http://127.0.0.1:$http/") ;;
        http-close) command=("${wrk[@]}" "${close[@]}" "http://127.0.0.1:$http/") ;;
        1mib) command=("${wrk[@]}" "http://127.0.0.1:$http/1mib.bin") ;;
        https-keepalive) command=("${wrk[@]}" "https://127.0.0.1:$https/") ;;
        https-handshake) command=("${wrk[@]}" "${close[@]}" "https://127.0.0.1:$https/") ;;
        # The URL's name is the SNI: `localhost` (wrk tries each address the name has).
        tls-connect) command=("${wrk[@]}" "${close[@]}" "https://localhost:$https/") ;;
        h2) command=(h2load -t1 "-c$H2_CONNECTIONS" "-m$H2_STREAMS" -D "$DURATION" -H ":authority: $host"
            "--log-file=$WORK/h2load.log" "https://127.0.0.1:$https/") ;;
        *) die "unknown scenario $scenario" ;;
    esac
    read -r cpu_before _ < <(helper usage "$pid")
    pinned "$LOAD_CPU" "${command[@]}" >"$out" &
    load=$!
    # RSS halfway through, while every connection is open.
    sleep "$(awk -v d="$DURATION" 'BEGIN { print d / 2 }')"
    read -r _ rss < <(helper usage "$pid")
    wait "$load" || die "$scenario through $proxy: the load generator failed: $(tail -n 5 "$out")"
    read -r cpu_after _ < <(helper usage "$pid")
    kill -0 "$pid" 2>/dev/null || die "$proxy died during $scenario"
    if [[ $scenario == tcp-throughput ]]; then
        read -r units seconds <"$out"
    elif [[ $scenario == h2 ]]; then
        read -r units seconds p50 p99 errors < <(helper parse-h2load "$out" "$WORK/h2load.log")
    else
        read -r units seconds p50 p99 errors < <(helper parse-wrk "$out")
    fi
    # wrk times a pipelined batch as one sample (write to last answer), then corrects its
    # histogram as if each answer were one: its percentiles are no per-request latency (and
    # often read 0). Not measured.
    [[ $scenario != tcp-pipelined ]] || p50=nan p99=nan
    # Nothing served: broken if the client saw errors or the proxy no longer answers right;
    # otherwise the measurement was too short for this machine (a figure, reported as 0).
    if ! awk -v u="$units" 'BEGIN { exit !(u > 0) }'; then
        local broken="$proxy served nothing during $scenario in round $round ($errors errors): $(tail -n 5 "$out")"
        ((errors == 0)) || die "$broken"
        case $scenario in
            http-* | 1mib) ANSWER_TIMEOUT=30 wait_answer "$proxy" "$pid" "$host" "http://127.0.0.1:$http/" ;;
            *) die "$broken" ;;
        esac
        say "warning: $proxy served no whole answer during $scenario in round $round (${DURATION}s, too short on this machine?), and still answers right"
    fi
    local cpu
    cpu=$(awk -v a="$cpu_after" -v b="$cpu_before" 'BEGIN { printf "%.2f", a - b }')
    echo "$scenario $proxy $round $seconds $units $p50 $p99 $cpu $rss $errors" >>"$results"
    say "$(awk -v s="$scenario" -v p="$proxy" -v r="$round" -v u="$units" -v t="$seconds" \
        -v p99="$p99" -v c="$cpu" -v e="$errors" \
        'BEGIN { printf "%-16s %-12s round %s: %10.1f /s, p99 %s ms, cpu %.2f s, errors %d", s, p, r, u / t, p99, c, e }')"
}

main() {
    install_tools
    build_sozu
    (($(nproc) >= 2)) || say "warning: fewer than 2 CPUs: proxies and load share a core"

    LOAD_AVERAGE=$(cut -d' ' -f1-3 /proc/loadavg)
    WORK=$(mktemp -d /tmp/sozu-load.XXXXXX)
    chmod 755 "$WORK" # nginx workers may run as another user
    CERT=$ROOT/bin/assets/certificate.pem
    KEY=$ROOT/bin/assets/key.pem
    TOKEN="backend-$RANDOM$RANDOM"
    local results=$WORK/results.txt scale_results=$WORK/scale.txt meta=()
    : >"$results"

    declare -gA PORTS PROXY_PID
    local ports proxy scenario round
    read -r -a ports <<<"$(helper ports 12)"
    BACKEND_PORT=${ports[0]}
    SNI_BACKEND_A=${ports[10]} SNI_BACKEND_B=${ports[11]}
    PORTS[sozu]="${ports[*]:1:3}"
    PORTS[haproxy]="${ports[*]:4:3}"
    PORTS[nginx]="${ports[*]:7:3}"

    write_backend_config
    start backend "$LOAD_CPU" nginx -e "$WORK/backend/error.log" -p "$WORK/backend" -c "$WORK/backend.conf"
    wait_answer backend "$PID" localhost "http://127.0.0.1:$BACKEND_PORT/"
    # `1mib` is also measured straight from the backend, without a proxy ("direct").
    PORTS[direct]="$BACKEND_PORT $BACKEND_PORT $BACKEND_PORT"
    PROXY_PID[direct]=$PID
    ! selected 1mib || check_size backend "http://127.0.0.1:$BACKEND_PORT/1mib.bin" 1048576

    local scenarios=() do_scale= do_logs= do_faults= do_sni= do_idle= do_handshakes=
    for scenario in $SCENARIOS; do
        case $scenario in
            scale) do_scale=1 ;;
            logs) do_logs=1 ;;
            faults) do_faults=1 ;;
            sni-routing) do_sni=1 ;;
            idle) do_idle=1 ;;
            handshakes) do_handshakes=1 ;;
            *) scenarios+=("$scenario") ;;
        esac
    done

    read -r -a proxies <<<"$PROXIES"
    if ((${#scenarios[@]})); then
        write_sozu_config
        write_haproxy_config
        write_nginx_config
        for proxy in "${proxies[@]}"; do
            start_proxy "$proxy"
            check_proxy "$proxy" "${PROXY_PID[$proxy]}"
        done
        for round in $(seq "$ROUNDS"); do
            for scenario in "${scenarios[@]}"; do
                local order
                mapfile -t order < <(rotation "$round" "${proxies[@]}")
                for proxy in "${order[@]}"; do
                    measure "$scenario" "$proxy" "$round" "$results"
                done
                [[ $scenario != 1mib ]] || measure "$scenario" direct "$round" "$results"
            done
        done
    fi

    [[ -z $do_scale ]] || run_scale "$scale_results"
    [[ -z $do_logs ]] || run_logs "$WORK/logs.txt"
    if [[ -n $do_idle ]]; then
        run_idle "$WORK/idle.txt"
        meta+=("idle_results=$WORK/idle.txt")
    fi
    if [[ -n $do_handshakes ]]; then
        run_handshakes "$WORK/handshakes.txt"
        meta+=("handshakes_results=$WORK/handshakes.txt" "baseline=\`$SOZU_BASELINE\` $SOZU_BASELINE_NOTE")
    fi

    local versions=
    if [[ -n $do_faults ]]; then
        run_faults "$WORK/faults.txt"
        meta+=("faults_results=$WORK/faults.txt")
        versions+="; Toxiproxy $("$TOXIPROXY_BIN" -version | awk '{ print $NF }') (\`$TOXIPROXY_BIN\`)"
        versions+="; faults backend (of sozu and Toxiproxy, FAULTS_BACKEND): $FAULTS_BACKEND"
    fi
    if [[ -n $do_sni ]]; then
        run_sni "$WORK/sni.txt"
        meta+=("sni_results=$WORK/sni.txt")
        versions+="; $SSLH_VERSION"
    fi
    if selected h2; then
        versions+="; $(h2load --version | head -n 1)"
    fi

    local date report file sozu_source=built
    date=$(date -u '+%Y-%m-%d %H:%M UTC')
    [[ $SOZU_BIN == "$ROOT/target/release/sozu" ]] || sozu_source="SOZU_BIN override"
    [[ -z $SOZU_NOTE ]] || sozu_source+=": $SOZU_NOTE"
    report=$(helper report "$results" "$scale_results" "${meta[@]}")
    mkdir -p "$RESULTS_DIR"
    file=$RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M).md
    # Two runs within a minute keep both reports.
    [[ ! -e $file ]] || file=$RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M%S).md
    {
        echo "# Load benchmark, $date"
        echo
        echo "- machine: $(helper machine)"
        echo "- sozu: \`$SOZU_BIN\` ($("$SOZU_BIN" --version 2>&1 | head -n 1), $sozu_source; benchmark at commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)); $(haproxy -v | head -n 1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | cut -d' ' -f3); $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2); $(openssl version | cut -d' ' -f1-2) (HAProxy's and nginx's TLS); $(curl --version | head -n 1 | cut -d' ' -f1-2) (answer checks); $(python3 --version)$versions"
        echo "- proxies on CPU $PROXY_CPU; wrk (1 thread, $CONNECTIONS connections) and the nginx backend on CPU $LOAD_CPU${REALTIME:+; all of them SCHED_FIFO 10 (REALTIME)}"
        echo "- $ROUNDS rounds of ${DURATION}s per scenario and proxy, medians; large transfer: $STREAMS downloads of ${BIG_FILE_MB} MB at once"
        if [[ -n $do_handshakes ]]; then
            echo "- handshakes: tls-handshakes ($HANDSHAKE_THREADS threads, $HANDSHAKES connections per measurement) on CPU $LOAD_CPU"
        fi
        if selected h2; then
            echo "- h2: h2load (1 thread, $H2_CONNECTIONS connections × $H2_STREAMS streams at once) on CPU $LOAD_CPU"
        fi
        echo "- load average at start: $LOAD_AVERAGE (other work on the machine makes throughput noisy; CPU per request much less so)"
        echo
        echo "$report"
        echo
        echo "<details><summary>Every measurement</summary>"
        echo
        echo '```'
        echo "scenario proxy round seconds units p50_ms p99_ms cpu_seconds rss_kb errors"
        cat "$results" "$scale_results" "$WORK/logs.txt" "$WORK/faults.txt" "$WORK/sni.txt" "$WORK/idle.txt" 2>/dev/null || true
        [[ ! -s $WORK/handshakes.txt ]] || {
            echo "variant proxy round seconds handshakes resumed cpu_seconds"
            cat "$WORK/handshakes.txt"
        }
        echo '```'
        echo
        echo "</details>"
    } >"$file"
    echo
    cat "$file"
    say "written to $file"
}

main "$@"
