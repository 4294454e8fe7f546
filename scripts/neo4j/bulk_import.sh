#!/usr/bin/env bash
# First load of a large graph: Neo4j's own bulk importer (`neo4j-admin database import full`)
# writes the store files of a STOPPED, EMPTY database directly, with no transactions.
#
#   NEO4J_HOME=DIR bulk_import.sh DATABASE --nodes=User=users.csv --relationships=RATED=r.csv ...
#
# The importer (org.neo4j.cli.AdminTool, from org.neo4j:neo4j-command-line and
# org.neo4j:neo4j-import-tool, which org.neo4j:neo4j already pulls into lib/) writes
# $NEO4J_HOME/data/databases/DATABASE and $NEO4J_HOME/data/transactions/DATABASE: the
# folders Launcher.java (DatabaseManagementServiceBuilder(home)) opens, so
# `NEO4J_HOME=DIR server.sh start` serves the imported graph. Options after DATABASE go to
# the importer unchanged (see `... database import full --help`).
#
# Settings (environment):
#   NEO4J_HOME            database folder, created if missing (required)
#   NEO4J_IMPORT_HEAP     JVM heap of the importer               (default 1g)
#   NEO4J_IMPORT_MEMORY   importer off-heap memory (--max-off-heap-memory; its own default is
#                         90% of RAM, far too much on a shared machine)  (default 2g)
#   JAVA                  java executable (Java 17 or 21)        (default: java on PATH)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAVA="${JAVA:-java}"
[[ -n "${NEO4J_HOME:-}" ]] || { echo "bulk_import: set NEO4J_HOME (the database folder)" >&2; exit 2; }
[[ $# -ge 1 && "$1" != -* ]] || { echo "usage: NEO4J_HOME=DIR $0 DATABASE [importer options]" >&2; exit 2; }
DATABASE="$1"; shift

bash "$HERE/server.sh" build >/dev/null   # no-op once lib/ matches pom.xml
mkdir -p "$NEO4J_HOME"
export NEO4J_HOME="$(cd "$NEO4J_HOME" && pwd)"

# Same JDK openings as server.sh: the importer uses Neo4j's native/off-heap memory code.
exec "$JAVA" "-Xmx${NEO4J_IMPORT_HEAP:-1g}" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
  --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED \
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-exports=java.base/sun.nio.ch=ALL-UNNAMED \
  --add-opens=java.base/jdk.internal.misc=ALL-UNNAMED --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED \
  --enable-native-access=ALL-UNNAMED -Dlog4j2.disable.jmx=true \
  -cp "$HERE/lib/*" org.neo4j.cli.AdminTool database import full \
  "--max-off-heap-memory=${NEO4J_IMPORT_MEMORY:-2g}" "$@" "$DATABASE"
