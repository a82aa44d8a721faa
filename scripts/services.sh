#!/usr/bin/env bash
# Starts or stops a project-local redis-server and mariadbd (no system services are touched).
#
#   scripts/services.sh start DIR REDIS_PORT MARIADB_PORT
#   scripts/services.sh stop  DIR
#   scripts/services.sh status DIR
#
# DIR holds the data, sockets, logs and pid files. `start` is idempotent: servers already running
# from DIR are reused. It creates the database `shareline` and two accounts:
#   shareline_owner  (all privileges on shareline.*: migrations and the owner path)
#   shareline_public (SELECT on the public_* views only; granted by `shareline admin migrate`)
# Both connect over TCP to 127.0.0.1 with the passwords in $DIR/services.env (local use only).
set -euo pipefail

cmd=${1:?usage: services.sh start|stop|status DIR [REDIS_PORT MARIADB_PORT]}
dir=${2:?missing DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() { # pidfile name
    if alive "$1"; then
        local pid; pid=$(cat "$1")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        echo "stopped $2 (pid $pid)"
    fi
    rm -f "$1"
}

case "$cmd" in
stop)
    stop_pid "$dir/redis.pid" redis-server
    stop_pid "$dir/mariadb.pid" mariadbd
    exit 0
    ;;
status)
    alive "$dir/redis.pid" && echo "redis-server running (pid $(cat "$dir/redis.pid"))" || echo "redis-server stopped"
    alive "$dir/mariadb.pid" && echo "mariadbd running (pid $(cat "$dir/mariadb.pid"))" || echo "mariadbd stopped"
    exit 0
    ;;
start) ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac

redis_port=${3:?missing REDIS_PORT}
mariadb_port=${4:?missing MARIADB_PORT}
owner_pw=owner-local-dev
public_pw=public-local-dev

for bin in redis-server mariadbd mariadb-install-db mariadb mariadb-admin; do
    command -v "$bin" >/dev/null || { echo "services.sh: $bin not found (run scripts/deps.sh)" >&2; exit 1; }
done

# ---- redis ----
if ! alive "$dir/redis.pid"; then
    mkdir -p "$dir/redis"
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir/redis" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" --maxmemory 512mb --maxmemory-policy volatile-lru
    for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$redis_port" ping >/dev/null || { echo "redis-server did not start; see $dir/redis.log" >&2; exit 1; }
    echo "redis-server on 127.0.0.1:$redis_port"
fi

# ---- mariadb ----
sock="$dir/mysqld.sock"
if ! alive "$dir/mariadb.pid"; then
    if [ ! -d "$dir/mariadb/mysql" ]; then
        mkdir -p "$dir/mariadb"
        mariadb-install-db --no-defaults --datadir="$dir/mariadb" --auth-root-authentication-method=normal \
            --skip-test-db $( [ "$(id -u)" = 0 ] && echo --user=root ) >"$dir/mariadb-install.log" 2>&1 \
            || { echo "mariadb-install-db failed; see $dir/mariadb-install.log" >&2; exit 1; }
    fi
    user_opt=(); [ "$(id -u)" = 0 ] && user_opt=(--user=root)
    # its own temporary directory: internal temporary tables never meet another program's /tmp cleaning
    mkdir -p "$dir/tmp"
    nohup mariadbd --no-defaults --datadir="$dir/mariadb" --tmpdir="$dir/tmp" --socket="$sock" --port="$mariadb_port" \
        --bind-address=127.0.0.1 --skip-log-bin --innodb-buffer-pool-size=128M --innodb-log-file-size=8M \
        --pid-file="$dir/mariadb.pid" --log-error="$dir/mariadb.err" --max-connections=500 --max-allowed-packet=256M \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci "${user_opt[@]}" \
        >/dev/null 2>&1 &
    for _ in $(seq 1 100); do
        mariadb-admin --no-defaults --socket="$sock" -uroot ping >/dev/null 2>&1 && break; sleep 0.1
    done
    mariadb-admin --no-defaults --socket="$sock" -uroot ping >/dev/null 2>&1 \
        || { echo "mariadbd did not start; see $dir/mariadb.err" >&2; exit 1; }
    echo "mariadbd on 127.0.0.1:$mariadb_port"
fi

mariadb --no-defaults --socket="$sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS shareline CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'shareline_owner'@'127.0.0.1' IDENTIFIED BY '$owner_pw';
CREATE USER IF NOT EXISTS 'shareline_public'@'127.0.0.1' IDENTIFIED BY '$public_pw';
GRANT ALL PRIVILEGES ON shareline.* TO 'shareline_owner'@'127.0.0.1' WITH GRANT OPTION;
SQL

cat >"$dir/services.env" <<ENV
SHARELINE_REDIS_HOST=127.0.0.1
SHARELINE_REDIS_PORT=$redis_port
SHARELINE_DB_HOST=127.0.0.1
SHARELINE_DB_PORT=$mariadb_port
SHARELINE_DB_NAME=shareline
SHARELINE_DB_USER=shareline_owner
SHARELINE_DB_PASSWORD=$owner_pw
SHARELINE_DB_PUBLIC_USER=shareline_public
SHARELINE_DB_PUBLIC_PASSWORD=$public_pw
SHARELINE_DB_SOCKET=$sock
ENV
echo "services ready ($dir/services.env)"
