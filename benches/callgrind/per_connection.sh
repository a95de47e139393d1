#!/bin/bash
# User-space instructions per connection on the one-message path, counted by callgrind:
# steadier than rates on a shared machine, and blind to the kernel (which it leaves out).
#
#   benches/callgrind/per_connection.sh [relayguard binary] [connections]
#
# Starts a Python sink that answers XCLIENT with 220 as Postfix does, relayguard
# (identity = "xclient", permit_mynetworks) and HAProxy in TCP mode in front of it, each under
# callgrind with instrumentation switched on only while smtp-source sends its messages (one
# per connection, 5 KB), and prints each proxy's instructions per connection. Needs valgrind,
# haproxy, smtp-source and python3. Loopback only; it ends only the processes it started.
set -euo pipefail
bin=$(realpath "${1:-target/release/relayguard}")
connections=${2:-1000}
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sink_port=$(free_port); rg_port=$(free_port); hap_port=$(free_port)

cat > "$dir/sink.py" <<'PY'
import asyncio, sys
count = 0
async def handle(r, w):
    global count
    count += 1
    open(sys.argv[2], "w").write(str(count))
    w.write(b"220 sink.example ESMTP\r\n")
    try:
        while line := await r.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                w.write(b"250-sink.example\r\n250-PIPELINING\r\n250-SIZE 300000000\r\n"
                        b"250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\r\n"
                        b"250 8BITMIME\r\n")
            elif verb == b"XCLI":
                w.write(b"220 sink.example ESMTP\r\n")
            elif verb == b"DATA":
                w.write(b"354 go\r\n")
                await w.drain()
                while (body := await r.readline()) and body != b".\r\n":
                    pass
                w.write(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"QUIT":
                w.write(b"221 bye\r\n")
                await w.drain()
                break
            else:
                w.write(b"250 2.0.0 Ok\r\n")
            await w.drain()
    except ConnectionError:
        pass
    w.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=512)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
python3 "$dir/sink.py" "$sink_port" "$dir/sink.count" & pids+=($!)

cat > "$dir/rg.toml" <<TOML
[policy]
myhostname = "relayguard.localhost"
mynetworks = "127.0.0.0/8"

[[listener]]
name = "smtp"
address = "127.0.0.1:$rg_port"
role = "smtp"

[upstream]
kind = "smtp"
address = "127.0.0.1:$sink_port"
identity = "xclient"
allow_open_relay = true
TOML

cat > "$dir/haproxy.cfg" <<CFG
global
    tune.bufsize 65536
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 127.0.0.1:$hap_port
    default_backend b
backend b
    server s 127.0.0.1:$sink_port
CFG

# measure NAME PORT COMMAND...: instructions per connection of COMMAND, a proxy on PORT.
measure() {
    local name=$1 port=$2
    shift 2
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/$name.out" "$@" \
        > "$dir/$name.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 120); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" \
            2>/dev/null && break
        sleep 1
    done
    sleep 2
    local before
    before=$(cat "$dir/sink.count" 2>/dev/null || echo 0)
    callgrind_control -i on "$pid" > /dev/null
    timeout 600 smtp-source -s 10 -m "$connections" -l 5120 -f s@sender.example \
        -t u@local.test -M client.example "127.0.0.1:$port"
    callgrind_control -i off "$pid" > /dev/null
    local seen=$(( $(cat "$dir/sink.count") - before ))
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local total
    total=$(callgrind_annotate "$dir/$name.out" 2>/dev/null \
        | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "$name: $total instructions over $seen upstream connections: $(( total / seen )) per connection"
}

sleep 1
measure relayguard "$rg_port" "$bin" --config "$dir/rg.toml"
measure haproxy "$hap_port" haproxy -db -f "$dir/haproxy.cfg"
