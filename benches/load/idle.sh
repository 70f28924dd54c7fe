# The `idle` scenario of the load benchmark, sourced by run.sh (chosen by name only): each proxy
# gets IDLE_CONNECTIONS keep-alive client connections, one request on each, then left idle; the
# memory the proxy gained (main and workers: RSS, and PSS, which counts pages shared between
# its processes once) is divided by the connections. Each proxy runs with its own
# configuration, sized for the connections (and the backend connections they hold).

IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
# Seconds the connections idle before the memory is read: past sozu's back timeout here (5 s),
# after which it gives an idle client's backend connection to its pool, and past HAProxy's
# purge of idle backend connections (5 s).
IDLE_SETTLE=${IDLE_SETTLE:-10}

# write_idle_configs PORT_SOZU PORT_HAPROXY PORT_NGINX: the three proxies, HTTP only.
write_idle_configs() {
    local limit=$((IDLE_CONNECTIONS + 100))
    mkdir -p "$WORK/idle-nginx"
    cat >"$WORK/idle-sozu.toml" <<EOF
command_socket = "$WORK/idle-sozu.sock"
log_level = "error"
log_target = "stdout"
worker_count = 1
max_connections = $limit
front_timeout = 300
back_timeout = 5

[[listeners]]
protocol = "http"
address = "127.0.0.1:$1"

[clusters.web]
protocol = "http"
frontends = [{ address = "127.0.0.1:$1", hostname = "localhost" }]
backends = [{ address = "127.0.0.1:$BACKEND_PORT" }]
EOF
    cat >"$WORK/idle-haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $limit
    # HAProxy sizes its open files for a backend connection per client (2 x maxconn); a
    # container capped at 20,000 cannot give 10,000 clients that: warn instead of failing.
    no strict-limits

defaults
    mode http
    timeout connect 3s
    timeout client 300s
    timeout server 30s
    timeout http-keep-alive 300s

frontend http
    bind 127.0.0.1:$2
    default_backend web

backend web
    server backend 127.0.0.1:$BACKEND_PORT
EOF
    cat >"$WORK/idle-nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $((2 * limit + 500));
daemon off;
pid $WORK/idle-nginx/nginx.pid;
error_log $WORK/idle-nginx/error.log error;
events { worker_connections $((2 * limit)); }
http {
    access_log off;
    client_body_temp_path $WORK/idle-nginx;
    proxy_temp_path $WORK/idle-nginx;
    fastcgi_temp_path $WORK/idle-nginx;
    uwsgi_temp_path $WORK/idle-nginx;
    scgi_temp_path $WORK/idle-nginx;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    upstream web {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$3 backlog=4096;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

# run_idle RESULTS: per proxy, the memory before and with IDLE_CONNECTIONS idle connections, one
# line "idle PROXY CONNECTIONS RSS_BEFORE RSS_IDLE PSS_BEFORE PSS_IDLE ANON_BEFORE ANON_IDLE
# SOCKETS_IDLE" each (KiB; ANON is the anonymous part of PSS; SOCKETS the open sockets).
run_idle() {
    local results=$1 ports proxy port pid holder before after deadline
    # A proxy holds a client connection per idle connection, and while the connections come in
    # backend connections (sozu keeps 64 of a backend with their clients for a back timeout,
    # 5 s here, and pools the others as their exchange ends; HAProxy and nginx pool a few).
    # Out of descriptors, sozu closes the idle backend connections it keeps (least recently
    # used first) rather than refuse a client, so each process needs a descriptor per client
    # and some room, not two (a container capped at 20,000 files runs 10,000 connections; the
    # backend holds what the proxy keeps).
    local files=$((IDLE_CONNECTIONS + 1000))
    ((EUID != 0)) || ulimit -Hn "$((files > $(ulimit -Hn) ? files : $(ulimit -Hn)))" 2>/dev/null || true
    ulimit -n "$(ulimit -Hn)"
    (($(ulimit -n) >= files)) ||
        die "the idle scenario needs $files open files (ulimit -Hn: $(ulimit -Hn))"
    read -r -a ports <<<"$(helper ports 3)"
    write_idle_configs "${ports[@]}"
    : >"$results"
    for proxy in sozu haproxy nginx; do
        case $proxy in
            sozu)
                port=${ports[0]}
                start idle-sozu "$PROXY_CPU" "$SOZU_BIN" start -c "$WORK/idle-sozu.toml"
                ;;
            haproxy)
                port=${ports[1]}
                start idle-haproxy "$PROXY_CPU" haproxy -db -f "$WORK/idle-haproxy.cfg"
                ;;
            nginx)
                port=${ports[2]}
                start idle-nginx "$PROXY_CPU" nginx -e "$WORK/idle-nginx/error.log" -p "$WORK/idle-nginx" -c "$WORK/idle-nginx.conf"
                ;;
        esac
        pid=$PID
        wait_answer "idle-$proxy" "$pid" localhost "http://127.0.0.1:$port/"
        read -r -a before < <(helper memory "$pid")
        rm -f "$WORK/idle-ready" "$WORK/idle-hold"
        mkfifo "$WORK/idle-hold"
        # The holder keeps its connections while its stdin, this fifo, stays open (fd 9).
        taskset -c "$LOAD_CPU" python3 -B "$HERE/helper.py" hold-idle "$port" "$IDLE_CONNECTIONS" "$WORK/idle-ready" <"$WORK/idle-hold" &
        holder=$!
        exec 9>"$WORK/idle-hold"
        deadline=$((SECONDS + 300))
        until [[ -s $WORK/idle-ready ]]; do
            kill -0 "$holder" 2>/dev/null || die "the idle client through $proxy failed"
            ((SECONDS < deadline)) || die "$IDLE_CONNECTIONS idle connections through $proxy took over 300 s"
            sleep 0.2
        done
        sleep "$IDLE_SETTLE"
        kill -0 "$holder" 2>/dev/null || die "the idle client through $proxy failed"
        read -r -a after < <(helper memory "$pid")
        echo "idle $proxy $IDLE_CONNECTIONS ${before[0]} ${after[0]} ${before[1]} ${after[1]}" \
            "${before[2]} ${after[2]} ${after[3]}" >>"$results"
        say "$(awk -v p="$proxy" -v n="$IDLE_CONNECTIONS" -v b="${before[0]}" -v a="${after[0]}" \
            -v pb="${before[1]}" -v pa="${after[1]}" \
            'BEGIN { printf "idle             %-12s %d connections: %.2f KiB each (RSS), %.2f (PSS); whole proxy %d KiB RSS, %d KiB PSS", p, n, (a - b) / n, (pa - pb) / n, a, pa }')"
        exec 9>&-
        wait "$holder" || die "the idle client through $proxy failed"
        read -r -a tree <<<"$(helper tree "$pid")"
        kill -TERM "${tree[@]}" 2>/dev/null || true
    done
}
