#!/usr/bin/env bash
# Dev/test Neo4j 5.26 Community server for kgrec (embedded database + Bolt on 127.0.0.1).
#
# Authentication is on by default: the first start writes a random password for user neo4j
# to $NEO4J_RUN_DIR/password (mode 600, only you can read it) and every start sets the
# server's password from that file. Point kgrec at it with
#   export KGREC_NEO4J_PASSWORD_FILE=.neo4j/password   (or KGREC_NEO4J_PASSWORD=...)
#
#   server.sh build    fetch the jars from Maven Central into scripts/neo4j/lib (once)
#   server.sh start    start in the background, wait until Bolt answers
#   server.sh stop     stop cleanly (SIGTERM -> managementService.shutdown())
#   server.sh status   say whether it runs and answers
#
# Settings (environment):
#   NEO4J_PORT       Bolt port                       (default 7687)
#   NEO4J_HOME       database folder                 (default <repo>/.neo4j/data-$NEO4J_PORT)
#   NEO4J_RUN_DIR    pid file and log                (default <repo>/.neo4j)
#   NEO4J_AUTH       on|off                          (default on)
#   NEO4J_PASSWORD_FILE  password of user neo4j      (default $NEO4J_RUN_DIR/password, made
#                    on first start; NEO4J_PASSWORD, if set, is used instead and not stored)
#   NEO4J_LISTEN     Bolt listen address             (default 127.0.0.1: this machine only)
#   NEO4J_HEAP       JVM heap                        (default 2g)
#   NEO4J_PAGECACHE  page cache                      (default 512m)
#   NEO4J_START_TIMEOUT  seconds to wait for Bolt    (default 180)
#   JAVA             java executable (Java 17 or 21) (default: java on PATH)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PORT="${NEO4J_PORT:-7687}"
RUN_DIR="${NEO4J_RUN_DIR:-$REPO/.neo4j}"
export NEO4J_HOME="${NEO4J_HOME:-$RUN_DIR/data-$PORT}"
PID_FILE="$RUN_DIR/neo4j-$PORT.pid"
PASSWORD_FILE="${NEO4J_PASSWORD_FILE:-$RUN_DIR/password}"
LISTEN="${NEO4J_LISTEN:-127.0.0.1}"
AUTH="${NEO4J_AUTH:-on}"
LOG_FILE="$RUN_DIR/neo4j-$PORT.log"
JAVA="${JAVA:-java}"
TIMEOUT="${NEO4J_START_TIMEOUT:-180}"
READY="kgrec neo4j 5.26 ready"

# Neo4j 5 on Java 17+ reflects into these JDK internals (its own start script opens them too).
JVM_OPTS=(
  "-Xms${NEO4J_HEAP:-2g}" "-Xmx${NEO4J_HEAP:-2g}" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError
  -XX:-OmitStackTraceInFastThrow -XX:+UnlockDiagnosticVMOptions -XX:+DebugNonSafepoints
  --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.lang.invoke=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-exports=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.misc=ALL-UNNAMED --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
  --enable-native-access=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true -Djdk.nio.maxCachedBufferSize=1024
  -Dlog4j2.disable.jmx=true
)

lib_complete() { [[ -f "$HERE/lib/.complete" ]] && cmp -s "$HERE/lib/.complete" <(sha256sum "$HERE/pom.xml"); }

# Launcher.java compiled once (the single-file source launcher would compile it, against all
# the jars, on every start: about 3 s of each start on 2 cores).
CLASSES="$HERE/lib/classes"
launcher() {
  [[ "$CLASSES/Launcher.class" -nt "$HERE/Launcher.java" ]] && return 0
  mkdir -p "$CLASSES"
  local tmp; tmp="$(mktemp -d "$CLASSES/.javac.XXXXXX")"  # two starts at once: one rename wins
  javac -nowarn -cp "$HERE/lib/*" -d "$tmp" "$HERE/Launcher.java"
  mv "$tmp/Launcher.class" "$CLASSES/Launcher.class"
  rm -rf "$tmp"
}

build() {
  if lib_complete; then echo "neo4j: jars already in $HERE/lib"; return 0; fi
  command -v mvn >/dev/null || { echo "neo4j: Maven (mvn) is needed to fetch the jars" >&2; exit 1; }
  rm -rf "$HERE/lib"
  (cd "$HERE" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies)
  sha256sum "$HERE/pom.xml" > "$HERE/lib/.complete"
  echo "neo4j: $(ls "$HERE/lib"/*.jar | wc -l) jars in $HERE/lib"
}

# A killed server stays a zombie until its parent (init, once start's shell has gone) reaps it,
# and kill -0 still succeeds on a zombie: read the process state instead.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat; stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0  # no /proc: kill -0 it is
  stat="${stat##*) }"  # the state letter follows the command name's closing parenthesis
  [[ "${stat:0:1}" != Z ]]
}

running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid; pid="$(cat "$PID_FILE")"
  alive "$pid" && echo "$pid"
}

# A wildcard listen address answers on loopback too.
probe_host() { case "$LISTEN" in 0.0.0.0|::|'[::]') echo 127.0.0.1 ;; *) echo "$LISTEN" ;; esac; }
bolt_answers() { (exec 3<>"/dev/tcp/$(probe_host)/$PORT") 2>/dev/null; }

# The password reaches Java through the environment only (never argv, so `ps` never shows it).
load_password() {
  [[ "$AUTH" == on ]] || { unset NEO4J_PASSWORD; return 0; }
  [[ -n "${NEO4J_PASSWORD:-}" ]] && { export NEO4J_PASSWORD; return 0; }
  if [[ ! -s "$PASSWORD_FILE" ]]; then
    mkdir -p "$(dirname "$PASSWORD_FILE")"
    (umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 > "$PASSWORD_FILE")
    echo "neo4j: new password for user neo4j in $PASSWORD_FILE"
  fi
  chmod 600 "$PASSWORD_FILE"
  NEO4J_PASSWORD="$(cat "$PASSWORD_FILE")"
  export NEO4J_PASSWORD
}

start() {
  if pid="$(running_pid)"; then echo "neo4j: already running (pid $pid) on port $PORT"; return 0; fi
  if bolt_answers; then echo "neo4j: port $PORT is taken by another process" >&2; exit 1; fi
  lib_complete || build
  launcher
  [[ "$AUTH" == on || "$AUTH" == off ]] || { echo "neo4j: NEO4J_AUTH must be on or off" >&2; exit 1; }
  mkdir -p "$RUN_DIR" "$NEO4J_HOME"
  load_password
  # setsid: the server outlives this shell; its pid is what stop() signals.
  setsid "$JAVA" "${JVM_OPTS[@]}" ${EXTRA_JAVA:-} -cp "${LAUNCHER_CP:-$CLASSES}:$HERE/lib/*" Launcher \
    --home "$NEO4J_HOME" --port "$PORT" --listen "$LISTEN" --auth "$AUTH" >"$LOG_FILE" 2>&1 < /dev/null &
  echo $! > "$PID_FILE"
  local pid; pid="$(cat "$PID_FILE")" waited=0 polls=0
  until grep -q "$READY" "$LOG_FILE" 2>/dev/null && bolt_answers; do
    if ! alive "$pid" || (( waited >= TIMEOUT )); then
      echo "neo4j: failed to start on port $PORT within ${waited}s; log tail ($LOG_FILE):" >&2
      tail -n 40 "$LOG_FILE" >&2 || true
      kill "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      exit 1
    fi
    sleep 0.2; polls=$((polls + 1)); waited=$((polls / 5))
  done
  echo "neo4j: running (pid $pid) bolt://$(probe_host):$PORT, auth $AUTH, data $NEO4J_HOME," \
    "log $LOG_FILE (${waited}s)"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then echo "neo4j: not running on port $PORT"; rm -f "$PID_FILE"; return 0; fi
  kill -TERM "$pid"
  for _ in $(seq 1 300); do
    alive "$pid" || { rm -f "$PID_FILE"; echo "neo4j: stopped (pid $pid)"; return 0; }
    sleep 0.2
  done
  echo "neo4j: pid $pid did not stop within 60s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
  return 1
}

status() {
  if pid="$(running_pid)"; then
    if bolt_answers; then echo "neo4j: running (pid $pid) bolt://$(probe_host):$PORT"; return 0; fi
    echo "neo4j: pid $pid alive but Bolt on port $PORT does not answer"; return 1
  fi
  echo "neo4j: not running on port $PORT"; return 3
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 build|start|stop|status" >&2; exit 2 ;;
esac
