# The `handshakes` scenario of the load benchmark, sourced by run.sh (chosen by name only): TLS
# 1.3 handshakes with an RSA 2048 and an ECDSA P-256 certificate, full (the client offers no
# session) and resumed (the client offers a ticket of an earlier connection), through sozu,
# HAProxy and nginx with session tickets on as each ships them, and through a second sozu binary
# when SOZU_BASELINE names one (e.g. a build with another TLS provider). The client is
# `tls-handshakes` (benches/src/bin/tls-handshakes.rs): one GET with `Connection: close` per
# connection, each answer checked. See doc/benchmarks.md, "handshakes".

HANDSHAKES=${HANDSHAKES:-2000}                # connections per measurement
HANDSHAKE_THREADS=${HANDSHAKE_THREADS:-8}     # client threads, each one connection at a time
SOZU_BASELINE=${SOZU_BASELINE:-}              # a second sozu binary, measured as `sozu-baseline`
SOZU_BASELINE_NOTE=${SOZU_BASELINE_NOTE:-}    # what that binary is, for the report
HANDSHAKE_CLIENT=${HANDSHAKE_CLIENT:-}        # the client; empty: build it (release)

# The variants measured: certificate and session.
HANDSHAKE_VARIANTS=(rsa-full ecdsa-full rsa-resumed ecdsa-resumed)

build_handshake_client() {
    [[ -z $HANDSHAKE_CLIENT ]] || return 0
    say "building tls-handshakes (release)"
    (cd "$ROOT" && cargo build --release -p sozu-benches --bin tls-handshakes)
    HANDSHAKE_CLIENT=$ROOT/target/release/tls-handshakes
}

# write_handshake_configs: a sozu (per binary), HAProxy and nginx configuration, each with an
# HTTPS listener per certificate on the ports of HANDSHAKE_PORTS[proxy] ("rsa ecdsa").
write_handshake_configs() {
    local proxy rsa ecdsa
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/ecdsa.key" -out "$WORK/ecdsa.pem" 2>/dev/null ||
        die "openssl could not make the ECDSA certificate"
    for proxy in sozu sozu-baseline; do
        read -r rsa ecdsa <<<"${HANDSHAKE_PORTS[$proxy]}"
        cat >"$WORK/hs-$proxy.toml" <<EOF
command_socket = "$WORK/hs-$proxy.sock"
log_level = "error"
log_target = "stdout"
worker_count = 1
max_connections = 5000
# curl's checks reach https://127.0.0.1 and send no SNI (an IP address is no server name).

[[listeners]]
protocol = "https"
address = "127.0.0.1:$rsa"
certificate = "$CERT"
key = "$KEY"
tls_versions = ["TLS_V13"]
cipher_suites = ["TLS13_AES_128_GCM_SHA256"]
groups_list = ["X25519"]
strict_sni_binding = false

[[listeners]]
protocol = "https"
address = "127.0.0.1:$ecdsa"
certificate = "$WORK/ecdsa.pem"
key = "$WORK/ecdsa.key"
tls_versions = ["TLS_V13"]
cipher_suites = ["TLS13_AES_128_GCM_SHA256"]
groups_list = ["X25519"]
strict_sni_binding = false

[clusters.web]
protocol = "http"
frontends = [
  { address = "127.0.0.1:$rsa", hostname = "localhost" },
  { address = "127.0.0.1:$ecdsa", hostname = "localhost" },
]
backends = [{ address = "127.0.0.1:$BACKEND_PORT" }]
EOF
    done
    read -r rsa ecdsa <<<"${HANDSHAKE_PORTS[haproxy]}"
    cat "$CERT" "$KEY" >"$WORK/hs-rsa.pem"
    cat "$WORK/ecdsa.pem" "$WORK/ecdsa.key" >"$WORK/hs-ecdsa.pem"
    cat >"$WORK/hs-haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 5000
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-bind-curves X25519

defaults
    mode http
    timeout connect 3s
    timeout client 60s
    timeout server 30s

frontend https
    bind 127.0.0.1:$rsa ssl crt $WORK/hs-rsa.pem
    bind 127.0.0.1:$ecdsa ssl crt $WORK/hs-ecdsa.pem
    default_backend web

backend web
    server backend 127.0.0.1:$BACKEND_PORT
EOF
    read -r rsa ecdsa <<<"${HANDSHAKE_PORTS[nginx]}"
    mkdir -p "$WORK/hs-nginx"
    local server certificate key port
    {
        cat <<EOF
worker_processes 1;
daemon off;
pid $WORK/hs-nginx/nginx.pid;
error_log $WORK/hs-nginx/error.log error;
events { worker_connections 10000; }
http {
    access_log off;
    client_body_temp_path $WORK/hs-nginx;
    proxy_temp_path $WORK/hs-nginx;
    fastcgi_temp_path $WORK/hs-nginx;
    uwsgi_temp_path $WORK/hs-nginx;
    scgi_temp_path $WORK/hs-nginx;
    upstream web {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
    }
EOF
        for server in "$rsa $CERT $KEY" "$ecdsa $WORK/ecdsa.pem $WORK/ecdsa.key"; do
            read -r port certificate key <<<"$server"
            cat <<EOF
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $certificate;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        ssl_ecdh_curve X25519;
        ssl_session_tickets on;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
        done
        echo "}"
    } >"$WORK/hs-nginx.conf"
}

start_handshake_proxy() {
    case $1 in
        sozu) start hs-sozu "$PROXY_CPU" "$SOZU_BIN" start -c "$WORK/hs-sozu.toml" ;;
        sozu-baseline) start hs-sozu-baseline "$PROXY_CPU" "$SOZU_BASELINE" start -c "$WORK/hs-sozu-baseline.toml" ;;
        haproxy) start hs-haproxy "$PROXY_CPU" haproxy -db -f "$WORK/hs-haproxy.cfg" ;;
        nginx) start hs-nginx "$PROXY_CPU" nginx -e "$WORK/hs-nginx/error.log" -p "$WORK/hs-nginx" -c "$WORK/hs-nginx.conf" ;;
    esac
    HANDSHAKE_PID[$1]=$PID
}

# run_handshakes RESULTS: every variant through every proxy, ROUNDS times (proxies rotated),
# one line "VARIANT PROXY ROUND SECONDS HANDSHAKES RESUMED CPU_SECONDS" each.
run_handshakes() {
    local results=$1 ports proxy round variant rsa ecdsa port mode pid before after out
    local proxies=(sozu)
    [[ -z $SOZU_BASELINE ]] || proxies+=(sozu-baseline)
    proxies+=(haproxy nginx)
    build_handshake_client
    declare -gA HANDSHAKE_PORTS HANDSHAKE_PID
    read -r -a ports <<<"$(helper ports 8)"
    HANDSHAKE_PORTS[sozu]="${ports[*]:0:2}"
    HANDSHAKE_PORTS[sozu-baseline]="${ports[*]:2:2}"
    HANDSHAKE_PORTS[haproxy]="${ports[*]:4:2}"
    HANDSHAKE_PORTS[nginx]="${ports[*]:6:2}"
    write_handshake_configs
    for proxy in "${proxies[@]}"; do
        start_handshake_proxy "$proxy"
        read -r rsa ecdsa <<<"${HANDSHAKE_PORTS[$proxy]}"
        wait_answer "hs-$proxy" "${HANDSHAKE_PID[$proxy]}" localhost "https://127.0.0.1:$rsa/" --cacert "$CERT" --tlsv1.3
        ANSWER_TIMEOUT=10 wait_answer "hs-$proxy" "${HANDSHAKE_PID[$proxy]}" localhost "https://127.0.0.1:$ecdsa/" --cacert "$WORK/ecdsa.pem" --tlsv1.3
    done
    : >"$results"
    out=$WORK/handshakes.out
    for round in $(seq "$ROUNDS"); do
        for variant in "${HANDSHAKE_VARIANTS[@]}"; do
            local order
            mapfile -t order < <(rotation "$round" "${proxies[@]}")
            for proxy in "${order[@]}"; do
                read -r rsa ecdsa <<<"${HANDSHAKE_PORTS[$proxy]}"
                port=$rsa
                [[ $variant == ecdsa-* ]] && port=$ecdsa
                mode=${variant#*-}
                pid=${HANDSHAKE_PID[$proxy]}
                read -r before _ < <(helper usage "$pid")
                taskset -c "$LOAD_CPU" "$HANDSHAKE_CLIENT" "127.0.0.1:$port" "$TOKEN" "$HANDSHAKES" \
                    "$HANDSHAKE_THREADS" "$mode" >"$out" ||
                    die "$variant through $proxy failed: $(tail -n 3 "$out")"
                read -r after _ < <(helper usage "$pid")
                local count resumed seconds
                read -r count resumed seconds _ <"$out"
                echo "$variant $proxy $round $seconds $count $resumed $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a - b }')" >>"$results"
                say "$(awk -v v="$variant" -v p="$proxy" -v r="$round" -v n="$count" -v m="$resumed" -v s="$seconds" -v a="$after" -v b="$before" \
                    'BEGIN { printf "%-16s %-14s round %s: %8.1f /s, %d of %d resumed, cpu %.0f µs each", v, p, r, n / s, m, n, (a - b) * 1e6 / n }')"
            done
        done
    done
    for proxy in "${proxies[@]}"; do
        read -r -a tree <<<"$(helper tree "${HANDSHAKE_PID[$proxy]}")"
        kill -TERM "${tree[@]}" 2>/dev/null || true
    done
}
