# The `sni-routing` scenario of the load benchmark, sourced by run.sh: new TLS connections
# routed by their server name without termination, through sozu's TCP listener with `sni` rules,
# the same decision made by a Lua script, HAProxy (`req_ssl_sni`) and sslh (`tls` probes with
# `sni_hostnames`). The backends terminate TLS themselves: two TLS servers of the backend nginx,
# `localhost` answering the run's token and `b.test` another text. See doc/benchmarks.md.

# The routers measured (sozu's two are listeners of one process).
SNI_ROUTERS=(sozu-rules sozu-lua haproxy-sni sslh)

# sni_backend_config: the backend's two TLS servers (appended to the backend nginx's http
# block), with an ECDSA P-256 certificate made for the run: a cheap handshake, so that the
# backend's core is not the bottleneck before the routers are.
sni_backend_config() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,DNS:b.test" \
        -keyout "$WORK/backend/tls.key" -out "$WORK/backend/tls.pem" 2>/dev/null ||
        die "openssl could not make the backends' certificate"
    local name port body
    for name in localhost b.test; do
        port=$SNI_BACKEND_A body=$TOKEN
        [[ $name == b.test ]] && port=$SNI_BACKEND_B body=tenant-b
        cat <<EOF
    server {
        listen 127.0.0.1:$port ssl backlog=4096;
        server_name $name;
        ssl_certificate $WORK/backend/tls.pem;
        ssl_certificate_key $WORK/backend/tls.key;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        ssl_session_tickets off;
        ssl_session_cache off;
        location = / { return 200 "$body"; }
    }
EOF
    done
}

write_sni_configs() {
    local rules=$1 script=$2 haproxy=$3 sslh=$4
    mkdir -p "$WORK/sni"
    cat >"$WORK/sni/sozu.toml" <<EOF
command_socket = "sozu.sock"
log_level = "error"
log_target = "stdout"
worker_count = 1
max_connections = 5000

# Rules: the server name picks the cluster; no default, so other names are closed.
[[listeners]]
protocol = "tcp"
address = "127.0.0.1:$rules"

# The same decision by a script.
[[listeners]]
protocol = "tcp"
address = "127.0.0.1:$script"
script = "route.lua"

[clusters.tenant-a]
protocol = "tcp"
frontends = [{ address = "127.0.0.1:$rules", sni = "localhost" }]
backends = [{ address = "127.0.0.1:$SNI_BACKEND_A" }]

[clusters.tenant-b]
protocol = "tcp"
frontends = [{ address = "127.0.0.1:$rules", sni = "b.test" }]
backends = [{ address = "127.0.0.1:$SNI_BACKEND_B" }]
EOF
    cp "$HERE/route.lua" "$WORK/sni/route.lua"

    cat >"$WORK/sni/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 5000

defaults
    mode tcp
    timeout connect 3s
    timeout client 60s
    timeout server 30s

frontend sni
    bind 127.0.0.1:$haproxy
    tcp-request inspect-delay 2s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend tenant-a if { req_ssl_sni -i localhost }
    use_backend tenant-b if { req_ssl_sni -i b.test }

backend tenant-a
    server a 127.0.0.1:$SNI_BACKEND_A

backend tenant-b
    server b 127.0.0.1:$SNI_BACKEND_B
EOF

    cat >"$WORK/sni/sslh.cfg" <<EOF
foreground: true;
inetd: false;
numeric: true;
transparent: false;
timeout: 2;
listen: ( { host: "127.0.0.1"; port: "$sslh"; } );
protocols: (
    { name: "tls"; host: "127.0.0.1"; port: "$SNI_BACKEND_A"; sni_hostnames: [ "localhost" ]; },
    { name: "tls"; host: "127.0.0.1"; port: "$SNI_BACKEND_B"; sni_hostnames: [ "b.test" ]; }
);
EOF
}

# sni_check NAME PID PORT: through the router, SNI localhost reaches the backend that answers
# the token and SNI b.test the other one, each over TLS terminated by the backend (its
# certificate checked).
sni_check() {
    local name=$1 pid=$2 port=$3 body
    wait_answer "$name" "$pid" localhost \
        "https://localhost:$port/" --resolve "localhost:$port:127.0.0.1" --cacert "$WORK/backend/tls.pem"
    body=$(curl -sS --max-time 5 --resolve "b.test:$port:127.0.0.1" --cacert "$WORK/backend/tls.pem" \
        "https://b.test:$port/" 2>&1) || true
    [[ $body == tenant-b ]] || die "$name does not route SNI b.test to its backend (got: ${body:0:200})"
}

# run_sni RESULTS: starts the routers, checks each routes both names, then measures new TLS
# connections through each ROUNDS times.
run_sni() {
    local results=$1 ports router round sslh_bin
    read -r -a ports <<<"$(helper ports 4)"
    write_sni_configs "${ports[@]}"

    start sozu-sni "$PROXY_CPU" "$SOZU_BIN" start -c "$WORK/sni/sozu.toml"
    PROXY_PID[sozu-rules]=$PID PROXY_PID[sozu-lua]=$PID
    PORTS[sozu-rules]="- ${ports[0]} -" PORTS[sozu-lua]="- ${ports[1]} -"
    sni_check sozu-sni "$PID" "${ports[0]}"
    ANSWER_TIMEOUT=10 sni_check sozu-sni "$PID" "${ports[1]}"

    start haproxy-sni "$PROXY_CPU" haproxy -db -f "$WORK/sni/haproxy.cfg"
    PROXY_PID[haproxy-sni]=$PID PORTS[haproxy-sni]="- ${ports[2]} -"
    sni_check haproxy-sni "$PID" "${ports[2]}"

    # sslh-ev (one process, libev) where it exists, else sslh-select (one process, select):
    # the fork-per-connection sslh would not be comparable on one core.
    sslh_bin=$(command -v sslh-ev || command -v sslh-select) || die "sslh-ev or sslh-select is missing"
    start sslh "$PROXY_CPU" "$sslh_bin" "-F$WORK/sni/sslh.cfg"
    PROXY_PID[sslh]=$PID PORTS[sslh]="- ${ports[3]} -"
    sni_check sslh "$PID" "${ports[3]}"
    SSLH_VERSION="$(basename "$sslh_bin") $("$sslh_bin" -V 2>&1 | head -n 1 | awk '{ print $NF }')"
    say "every router sends SNI localhost and b.test to their own backends"

    for round in $(seq "$ROUNDS"); do
        local order
        mapfile -t order < <(rotation "$round" "${SNI_ROUTERS[@]}")
        for router in "${order[@]}"; do
            measure tls-connect "$router" "$round" "$results"
        done
    done
}
