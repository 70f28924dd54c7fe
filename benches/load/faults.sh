# The `faults` scenario of the load benchmark, sourced by run.sh: HTTP keep-alive through a
# cluster without fault and through one with a `latency 0` fault of probability 1, over HTTP and
# over TCP, and the same through Toxiproxy with and without a `latency 0` toxic; then sozu's
# faulted TCP path and Toxiproxy's toxic one again with pipelined requests (pipeline.lua), so
# that the proxies rather than the client and backend bound the rate. One sozu and one
# Toxiproxy, both on PROXY_CPU, both in front of one backend on LOAD_CPU: bench-backend
# (benches/src/bin/bench-backend.rs, FAULTS_BACKEND=light), which answers all the pipelined
# requests of one read in one write and costs the client's core less than nginx, so that the
# proxies rather than the client's core bound the rates; or the nginx backend of the other
# scenarios (FAULTS_BACKEND=nginx). See doc/benchmarks.md.

TOXIPROXY_VERSION=${TOXIPROXY_VERSION:-2.7.0}  # the Toxiproxy release built from source
TOXIPROXY_BIN=${TOXIPROXY_BIN:-}               # a toxiproxy-server binary; empty: build one
TOXIPROXY_GIT=${TOXIPROXY_GIT:-}               # a git directory of Toxiproxy (when no module proxy)
ZEROLOG_GIT=${ZEROLOG_GIT:-}                   # a git directory of zerolog (same)
ZEROLOG_VERSION=1.31.0                         # the zerolog of Toxiproxy 2.7's go.mod
SOZU_BASELINE_BIN=${SOZU_BASELINE_BIN:-}       # a sozu from before faults existed, compared too
FAULTS_BACKEND=${FAULTS_BACKEND:-light}        # the backend of both proxies: light or nginx
BENCH_BACKEND=${BENCH_BACKEND:-}               # a bench-backend binary; empty: build one

# The pseudo-proxies of the scenario (sozu's two share one process, Toxiproxy's another):
# name, scenario measured through it, host asked for.
# The two HTTP clusters' names and host names have the same lengths, so that hashing and
# parsing them costs the same and only the fault differs.
FAULT_TARGETS=(
    "sozu-http-clean http-keepalive clean.localhost"
    "sozu-http-fault http-keepalive fault.localhost"
    "sozu-tcp-clean tcp-keepalive localhost"
    "sozu-tcp-fault tcp-keepalive localhost"
    "toxiproxy-clean tcp-keepalive localhost"
    "toxiproxy-toxic tcp-keepalive localhost"
    "sozu-tcp-fault tcp-pipelined localhost"
    "toxiproxy-toxic tcp-pipelined localhost"
)

# Go packages of Debian that Toxiproxy's server imports (zerolog aside: Debian 12's is too old).
TOXIPROXY_DEBIAN_PACKAGES=(golang-go golang-github-gorilla-mux-dev
    golang-github-prometheus-client-golang-dev golang-github-urfave-cli-v2-dev
    golang-golang-x-term-dev golang-gopkg-tomb.v1-dev golang-github-mattn-go-colorable-dev
    golang-github-rs-xid-dev)

# build_toxiproxy: sets TOXIPROXY_BIN. A binary built once is kept in target/bench-tools/. With
# the Go module proxy reachable, `go install`; otherwise a GOPATH build of the sources in
# TOXIPROXY_GIT and ZEROLOG_GIT (git directories, bare or not) with Debian's Go packages.
build_toxiproxy() {
    local tools=$ROOT/target/bench-tools
    if [[ -n $TOXIPROXY_BIN ]]; then
        [[ -x $TOXIPROXY_BIN ]] || die "TOXIPROXY_BIN=$TOXIPROXY_BIN is not an executable"
        return
    fi
    TOXIPROXY_BIN=$tools/toxiproxy-server-$TOXIPROXY_VERSION
    [[ -x $TOXIPROXY_BIN ]] && return
    install_packages "${TOXIPROXY_DEBIAN_PACKAGES[@]}"
    mkdir -p "$tools"
    local gopath=$WORK/gopath
    local ldflags="-X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION"
    if [[ -z $TOXIPROXY_GIT ]]; then
        say "building Toxiproxy $TOXIPROXY_VERSION with go install"
        GOPATH=$gopath GOBIN=$gopath/bin go install -ldflags "$ldflags" \
            "github.com/Shopify/toxiproxy/v2/cmd/server@v$TOXIPROXY_VERSION" ||
            die "go install of Toxiproxy failed (no Go module proxy?): set TOXIPROXY_GIT and ZEROLOG_GIT to git directories of Toxiproxy and zerolog, or TOXIPROXY_BIN (doc/benchmarks.md)"
        mv "$gopath/bin/server" "$TOXIPROXY_BIN"
        return
    fi
    [[ -n $ZEROLOG_GIT ]] || die "TOXIPROXY_GIT needs ZEROLOG_GIT too (a git directory of zerolog)"
    say "building Toxiproxy $TOXIPROXY_VERSION from $TOXIPROXY_GIT with Debian's Go packages"
    local source=$gopath/src/github.com/Shopify/toxiproxy/v2 zerolog=$gopath/src/github.com/rs/zerolog
    mkdir -p "$source" "$zerolog"
    git -C "$TOXIPROXY_GIT" archive "v$TOXIPROXY_VERSION" | tar -x -C "$source"
    git -C "$ZEROLOG_GIT" archive "v$ZEROLOG_VERSION" | tar -x -C "$zerolog"
    (cd "$gopath" && GO111MODULE=off GOPATH=$gopath:/usr/share/gocode GOCACHE=$gopath/cache \
        go build -ldflags "$ldflags" -o "$TOXIPROXY_BIN" github.com/Shopify/toxiproxy/v2/cmd/server) ||
        die "building Toxiproxy failed"
}

# start_faults_backend: sets FAULTS_BACKEND_PORT, the backend of both proxies. `light`: a
# bench-backend (built in release unless BENCH_BACKEND is given) on its own port and LOAD_CPU,
# answering the run's token; `nginx`: the nginx backend every scenario shares.
start_faults_backend() {
    case $FAULTS_BACKEND in
        nginx) FAULTS_BACKEND_PORT=$BACKEND_PORT ;;
        light)
            if [[ -z $BENCH_BACKEND ]]; then
                say "building bench-backend (release)"
                (cd "$ROOT" && cargo build --release -p sozu-benches --bin bench-backend)
                BENCH_BACKEND=$ROOT/target/release/bench-backend
            fi
            [[ -x $BENCH_BACKEND ]] || die "BENCH_BACKEND=$BENCH_BACKEND is not an executable"
            FAULTS_BACKEND_PORT=$(helper ports 1)
            start bench-backend "$LOAD_CPU" "$BENCH_BACKEND" "$FAULTS_BACKEND_PORT" "$TOKEN"
            wait_answer bench-backend "$PID" localhost "http://127.0.0.1:$FAULTS_BACKEND_PORT/"
            ;;
        *) die "FAULTS_BACKEND=$FAULTS_BACKEND: light or nginx" ;;
    esac
}

# write_faults_config DIR HTTP TCP_CLEAN TCP_FAULT [no-faults]: sozu's configuration, with the
# two `latency 0` faults unless told otherwise (for a build from before faults existed).
write_faults_config() {
    local dir=$1 http=$2 tcp_clean=$3 tcp_fault=$4 faults
    faults=$(cat <<EOF
[[faults]]
name = "zero-latency-http"
cluster_id = "fault"
type = "latency"
latency = 0
probability = 1

[[faults]]
name = "zero-latency-tcp"
cluster_id = "tcp-faulted"
type = "latency"
latency = 0
probability = 1
EOF
    )
    [[ ${5:-} != no-faults ]] || faults=
    mkdir -p "$dir"
    cat >"$dir/sozu.toml" <<EOF
command_socket = "sozu.sock"
log_level = "error"
log_target = "stdout"
worker_count = 1
max_connections = 5000

[[listeners]]
protocol = "http"
address = "127.0.0.1:$http"

[[listeners]]
protocol = "tcp"
address = "127.0.0.1:$tcp_clean"

[[listeners]]
protocol = "tcp"
address = "127.0.0.1:$tcp_fault"

$faults

[clusters.clean]
protocol = "http"
frontends = [{ address = "127.0.0.1:$http", hostname = "clean.localhost" }]
backends = [{ address = "127.0.0.1:$FAULTS_BACKEND_PORT" }]

[clusters.fault]
protocol = "http"
frontends = [{ address = "127.0.0.1:$http", hostname = "fault.localhost" }]
backends = [{ address = "127.0.0.1:$FAULTS_BACKEND_PORT" }]

[clusters.tcp-clean]
protocol = "tcp"
frontends = [{ address = "127.0.0.1:$tcp_clean" }]
backends = [{ address = "127.0.0.1:$FAULTS_BACKEND_PORT" }]

[clusters.tcp-faulted]
protocol = "tcp"
frontends = [{ address = "127.0.0.1:$tcp_fault" }]
backends = [{ address = "127.0.0.1:$FAULTS_BACKEND_PORT" }]
EOF
}

# faults_check_sozu: sozu lists both faults, each having touched at least one request or
# connection (the checks before measuring went through them).
faults_check_sozu() {
    local listed name touched
    listed=$("$SOZU_BIN" fault list -c "$WORK/faults/sozu.toml" 2>&1) || die "sozu fault list failed: $listed"
    for name in zero-latency-http zero-latency-tcp; do
        touched=$(awk -v n="$name" '$1 == n { print $NF }' <<<"$listed")
        [[ $touched =~ ^[0-9]+$ ]] && ((touched > 0)) ||
            die "sozu's fault $name did not act on the checked traffic: $listed"
    done
}

# faults_check_toxiproxy API: the toxic is on the `toxic` proxy, none on `plain`.
faults_check_toxiproxy() {
    local api=$1 listed
    listed=$(curl -sS --max-time 5 "http://$api/proxies") || die "Toxiproxy's API does not answer"
    python3 -c '
import json, sys
proxies = json.loads(sys.argv[1])
assert [t["type"] for t in proxies["toxic"]["toxics"]] == ["latency"], proxies
assert proxies["toxic"]["toxics"][0]["attributes"]["latency"] == 0, proxies
assert proxies["plain"]["toxics"] == [], proxies
' "$listed" || die "Toxiproxy's proxies are not as set: $listed"
}

# run_faults RESULTS: starts the two proxies, checks every path answers the backend's token,
# then measures each target ROUNDS times.
run_faults() {
    local results=$1 ports http tcp_clean tcp_fault plain toxic api pid target name scenario host round
    local targets=("${FAULT_TARGETS[@]}")
    build_toxiproxy
    start_faults_backend
    read -r -a ports <<<"$(helper ports 9)"
    http=${ports[0]} tcp_clean=${ports[1]} tcp_fault=${ports[2]} plain=${ports[3]} toxic=${ports[4]}
    api=127.0.0.1:${ports[5]}
    write_faults_config "$WORK/faults" "$http" "$tcp_clean" "$tcp_fault"
    start sozu-faults "$PROXY_CPU" "$SOZU_BIN" start -c "$WORK/faults/sozu.toml"
    pid=$PID
    PROXY_PID[sozu-http-clean]=$pid PROXY_PID[sozu-http-fault]=$pid
    PROXY_PID[sozu-tcp-clean]=$pid PROXY_PID[sozu-tcp-fault]=$pid
    PORTS[sozu-http-clean]="$http - -" PORTS[sozu-http-fault]="$http - -"
    PORTS[sozu-tcp-clean]="- - $tcp_clean" PORTS[sozu-tcp-fault]="- - $tcp_fault"
    wait_answer sozu-faults "$pid" clean.localhost "http://127.0.0.1:$http/"

    cat >"$WORK/faults/toxiproxy.json" <<EOF
[
  {"name": "plain", "listen": "127.0.0.1:$plain", "upstream": "127.0.0.1:$FAULTS_BACKEND_PORT", "enabled": true},
  {"name": "toxic", "listen": "127.0.0.1:$toxic", "upstream": "127.0.0.1:$FAULTS_BACKEND_PORT", "enabled": true}
]
EOF
    start toxiproxy "$PROXY_CPU" env LOG_LEVEL=error "$TOXIPROXY_BIN" -host 127.0.0.1 -port "${ports[5]}" \
        -config "$WORK/faults/toxiproxy.json"
    PROXY_PID[toxiproxy-clean]=$PID PROXY_PID[toxiproxy-toxic]=$PID
    PORTS[toxiproxy-clean]="- - $plain" PORTS[toxiproxy-toxic]="- - $toxic"
    wait_answer toxiproxy "$PID" localhost "http://127.0.0.1:$plain/"
    curl -sS --fail --max-time 5 -o /dev/null -X POST "http://$api/proxies/toxic/toxics" \
        -d '{"name": "zero-latency", "type": "latency", "stream": "downstream", "toxicity": 1, "attributes": {"latency": 0}}' ||
        die "Toxiproxy refused the latency toxic"
    faults_check_toxiproxy "$api"

    if [[ -n $SOZU_BASELINE_BIN ]]; then
        [[ -x $SOZU_BASELINE_BIN ]] || die "SOZU_BASELINE_BIN=$SOZU_BASELINE_BIN is not an executable"
        write_faults_config "$WORK/faults-baseline" "${ports[6]}" "${ports[7]}" "${ports[8]}" no-faults
        start sozu-baseline "$PROXY_CPU" "$SOZU_BASELINE_BIN" start -c "$WORK/faults-baseline/sozu.toml"
        PROXY_PID[sozu-http-baseline]=$PID PROXY_PID[sozu-tcp-baseline]=$PID
        PORTS[sozu-http-baseline]="${ports[6]} - -" PORTS[sozu-tcp-baseline]="- - ${ports[7]}"
        wait_answer sozu-baseline "$PID" clean.localhost "http://127.0.0.1:${ports[6]}/"
        targets+=("sozu-http-baseline http-keepalive clean.localhost" "sozu-tcp-baseline tcp-keepalive localhost")
    fi

    local http_port tcp_port port process
    for target in "${targets[@]}"; do
        read -r name scenario host <<<"$target"
        read -r http_port _ tcp_port <<<"${PORTS[$name]}"
        port=$tcp_port process=toxiproxy
        [[ $scenario == http-keepalive ]] && port=$http_port
        [[ $name == sozu-* ]] && process=sozu-faults
        [[ $name == *-baseline ]] && process=sozu-baseline
        ANSWER_TIMEOUT=10 wait_answer "$process" "${PROXY_PID[$name]}" "$host" "http://127.0.0.1:$port/"
    done
    faults_check_sozu
    say "sozu (faults on, listed) and Toxiproxy (toxic on) answer on every path"

    for round in $(seq "$ROUNDS"); do
        local order
        mapfile -t order < <(rotation "$round" "${targets[@]}")
        for target in "${order[@]}"; do
            read -r name scenario host <<<"$target"
            measure "$scenario" "$name" "$round" "$results" "$host"
        done
    done
}
