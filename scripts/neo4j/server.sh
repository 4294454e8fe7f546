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

# Launcher.java compiled once into a jar (the single-file source launcher would compile it,
# against all the jars, on every start: about 3 s of each start on 2 cores).
CLASSES="$HERE/lib/classes"
LAUNCHER_JAR="$CLASSES/launcher.jar"
launcher() {
  [[ "$LAUNCHER_JAR" -nt "$HERE/Launcher.java" ]] && return 0
  mkdir -p "$CLASSES"
  local tmp; tmp="$(mktemp -d "$CLASSES/.javac.XXXXXX")"  # two starts at once: one rename wins
  javac -nowarn -cp "$HERE/lib/*" -d "$tmp/classes" "$HERE/Launcher.java"
  jar --create --file "$tmp/launcher.jar" -C "$tmp/classes" .
  rm -f "$CDS_ARCHIVE"  # it holds the old launcher's classes
  mv "$tmp/launcher.jar" "$LAUNCHER_JAR"
  rm -rf "$tmp" "$CLASSES/Launcher.class"  # the class file of earlier versions
}

# Class data sharing: the first start that is stopped cleanly dumps the classes it loaded
# (about 110 MB, once); later starts map them instead of loading ~10k classes from the jars,
# about 3 s less per start on 2 cores. CDS needs jars only on the class path (hence the
# launcher jar), and a JVM that finds the archive stale just starts without it.
CDS_ARCHIVE="$CLASSES/neo4j-cds.jsa"
CDS_DUMP_FILE="$RUN_DIR/neo4j-$PORT.cds"  # where this server dumps its archive when it stops
cds_opts() {
  CDS=(-Xlog:cds=off -Xlog:cds+dynamic=off)
  rm -f "$CDS_DUMP_FILE"
  if [[ -f "$CDS_ARCHIVE" ]]; then
    CDS+=("-XX:SharedArchiveFile=$CDS_ARCHIVE")
    # Dumps of first starts killed before a clean stop (110 MB each, maybe cut short): with
    # the archive in place no server keeps its dump, so these are left-overs.
    rm -f "$CDS_ARCHIVE".*
  else
    local dump="$CDS_ARCHIVE.$PORT.$$"
    CDS+=("-XX:ArchiveClassesAtExit=$dump")
    echo "$dump" > "$CDS_DUMP_FILE"
  fi
}

# After a clean stop: the dumped archive into place (two first starts: the first rename wins).
keep_cds_archive() {
  [[ -f "$CDS_DUMP_FILE" ]] || return 0
  local dump; dump="$(cat "$CDS_DUMP_FILE")"
  rm -f "$CDS_DUMP_FILE"
  [[ -f "$dump" ]] || return 0
  if [[ -f "$CDS_ARCHIVE" ]]; then rm -f "$dump"; else mv "$dump" "$CDS_ARCHIVE"; fi
}

build() {
  if lib_complete; then
    echo "neo4j: jars already in $HERE/lib"
  else
    command -v mvn >/dev/null || { echo "neo4j: Maven (mvn) is needed to fetch the jars" >&2; exit 1; }
    rm -rf "$HERE/lib"
    (cd "$HERE" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies)
    sha256sum "$HERE/pom.xml" > "$HERE/lib/.complete"
    echo "neo4j: $(ls "$HERE/lib"/*.jar | wc -l) jars in $HERE/lib"
  fi
  launcher
  cds_archive
}

# Once per build: a throwaway server (a temporary home and password, a free port) started and
# stopped, so that even the first real start maps the class-data archive.
cds_archive() {
  [[ -f "$CDS_ARCHIVE" ]] && return 0
  local port tmp
  for port in $(seq 17687 17787); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break; done
  tmp="$(mktemp -d)"
  (export NEO4J_PORT="$port" NEO4J_RUN_DIR="$tmp" NEO4J_HOME="$tmp/home" NEO4J_AUTH=on
   unset NEO4J_PASSWORD NEO4J_PASSWORD_FILE  # setting the password loads Cypher's classes too
   bash "$HERE/server.sh" start >/dev/null && bash "$HERE/server.sh" stop >/dev/null) || true
  rm -rf "$tmp"
  if [[ -f "$CDS_ARCHIVE" ]]; then echo "neo4j: class-data archive in $CDS_ARCHIVE"
  else echo "neo4j: no class-data archive (starts take about 3 s longer)" >&2; fi
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
  cds_opts
  setsid "$JAVA" "${JVM_OPTS[@]}" "${CDS[@]}" -cp "$LAUNCHER_JAR:$HERE/lib/*" Launcher \
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
    alive "$pid" || { rm -f "$PID_FILE"; keep_cds_archive; echo "neo4j: stopped (pid $pid)"; return 0; }
    sleep 0.2
  done
  echo "neo4j: pid $pid did not stop within 60s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE" "$(cat "$CDS_DUMP_FILE" 2>/dev/null || echo /nonexistent)" "$CDS_DUMP_FILE"
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
