# bench/common.sh: helpers the benchmark scripts share (sourced, not run). The
# caller sets `work` (its temp dir) and `pids` (the processes its cleanup stops).

# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits (bounded) until something accepts connections on 127.0.0.1:$1.
wait_port() {
  python3 - "$1" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 20
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("bench: nothing listening on port %s after 20s" % sys.argv[1])
        time.sleep(0.05)
PY
}

# The backend every scenario proxies to: one nginx worker answering `return 200`,
# a process of its own in $work/backend. Sets backend_port; adds its pid to pids.
start_backend() {
  backend_port=$(free_port)
  mkdir -p "$work/backend"
  cat >"$work/backend/nginx.conf" <<CONF
worker_processes 1;
pid $work/backend/nginx.pid;
error_log $work/backend/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/backend;
  proxy_temp_path $work/backend;
  fastcgi_temp_path $work/backend;
  uwsgi_temp_path $work/backend;
  scgi_temp_path $work/backend;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$backend_port;
    location / { return 200 "ok\n"; }
  }
}
CONF
  nginx -p "$work/backend" -c "$work/backend/nginx.conf" -g 'daemon off;' &
  pids+=($!)
  wait_port "$backend_port"
}
