// Starts an embedded Neo4j 5.26 Community database with the Bolt connector (127.0.0.1 by default).
// server.sh compiles it once into lib/classes and runs:  java -cp 'lib/classes:lib/*' Launcher [options]
//   --home DIR        database home (data, logs), default $NEO4J_HOME or .neo4j/data
//   --port N          Bolt port, default $NEO4J_PORT or 7687
//   --listen HOST     Bolt listen address, default $NEO4J_LISTEN or 127.0.0.1
//   --auth on|off     authentication, default $NEO4J_AUTH or on; with "on" the password of
//                     user neo4j is set from $NEO4J_PASSWORD (env only, so `ps` never shows it)
//   --pagecache SIZE  page cache, default $NEO4J_PAGECACHE or 512m (small: 2-core, 24 GiB box)
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.BoltConnectorInternalSettings;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.QueryExecutionException;
import org.neo4j.io.ByteUnit;

public class Launcher {
    public static void main(String[] argv) throws Exception {
        Map<String, String> opt = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) opt.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        Path home = Path.of(pick(opt, "home", "NEO4J_HOME", ".neo4j/data")).toAbsolutePath();
        int port = Integer.parseInt(pick(opt, "port", "NEO4J_PORT", "7687"));
        String listen = pick(opt, "listen", "NEO4J_LISTEN", "127.0.0.1");
        boolean auth = !pick(opt, "auth", "NEO4J_AUTH", "on").equalsIgnoreCase("off");
        // Refuse before opening anything: an auth server without a password would keep the
        // built-in neo4j/neo4j login (which must be changed first), unusable by kgrec.
        if (auth && (System.getenv("NEO4J_PASSWORD") == null || System.getenv("NEO4J_PASSWORD").isEmpty())) {
            throw new IllegalArgumentException("--auth on needs $NEO4J_PASSWORD");
        }
        long pageCache = ByteUnit.parse(pick(opt, "pagecache", "NEO4J_PAGECACHE", "512m"));

        DatabaseManagementService service = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(listen, port))
                .setConfig(GraphDatabaseSettings.auth_enabled, auth)
                .setConfig(GraphDatabaseSettings.pagecache_memory, pageCache)
                // Cap all transaction state: heap is -Xmx2g and the machine is shared.
                .setConfig(GraphDatabaseSettings.memory_transaction_global_max_size, ByteUnit.gibiBytes(1))
                // Keep one rotated transaction log only: this is a dev/test server, not a backup source.
                .setConfig(GraphDatabaseSettings.keep_logical_logs, "1 files")
                .setConfig(GraphDatabaseSettings.logical_log_rotation_threshold, ByteUnit.mebiBytes(64))
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                // Bolt waits 5 s for its connections and 5 s more for its thread pool on every
                // shutdown, after the databases have closed: a stop took 10 s longer than it needs (the log
                // now warns that the event loops outlived the wait: harmless, the JVM exits).
                .setConfig(BoltConnectorInternalSettings.connection_shutdown_wait_time, Duration.ofMillis(500))
                .setConfig(BoltConnectorInternalSettings.thread_pool_shutdown_wait_time, Duration.ofMillis(500))
                .build();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            service.shutdown();
            stopped.countDown();
        }));
        if (auth) {
            try {
                setPassword(service);
            } catch (RuntimeException e) {
                e.printStackTrace();
                System.exit(1); // the shutdown hook closes the database; server.sh sees the exit
            }
        }
        System.out.printf("kgrec neo4j 5.26 ready: bolt://%s:%d home=%s auth=%s%n", listen, port, home, auth ? "on" : "off");
        stopped.await();
    }

    private static String pick(Map<String, String> opt, String key, String env, String dflt) {
        if (opt.containsKey(key)) return opt.get(key);
        String value = System.getenv(env);
        return value == null || value.isEmpty() ? dflt : value;
    }

    private static void setPassword(DatabaseManagementService service) {
        String password = System.getenv("NEO4J_PASSWORD");
        if (password == null || password.isEmpty()) throw new IllegalArgumentException("--auth on needs $NEO4J_PASSWORD");
        try {
            service.database("system").executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
        } catch (QueryExecutionException e) {
            // A restart with the same password: Neo4j refuses to "change" it to itself.
            if (!String.valueOf(e.getMessage()).contains("cannot be the same")) throw e;
        }
    }
}
