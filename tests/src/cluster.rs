//! A private Redis Cluster per test: `redis-server` processes in cluster mode on free
//! ports of 127.0.0.1, joined with `redis-cli --cluster create`.

use std::{
    fs::{self, File},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use cache_page_runtime::{Cache, RedisClusterStore};
use redis::{FromRedisValue, cluster_async::ClusterConnection};

use crate::redis_server::{
    TempDir, free_port, info_field, redis_major_version, redis_server_binary, unique_namespace,
};

/// How long a node has to answer `PING` after its start.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `redis-cli --cluster create` may run.
const CREATE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the cluster has to become healthy (after a create, a restart or a
/// failover). A failover takes the node timeout (2 s) and an election.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);

/// `--cluster-node-timeout`, in milliseconds.
const NODE_TIMEOUT_MS: u64 = 2000;

/// How many times a node start is retried when another process took a port first.
const PORT_ATTEMPTS: usize = 20;

/// The interval between two polls of the cluster's state.
const POLL: Duration = Duration::from_millis(20);

/// A Redis Cluster for one test, on 127.0.0.1.
///
/// [`start`](Self::start) launches three masters; [`start_with_replicas`](Self::start_with_replicas)
/// three masters and three replicas. Each node is a `redis-server` with
/// `--cluster-enabled yes`, no persistence, its files (`nodes.conf`, log) in a
/// temporary directory of its own. Every process is killed and reaped, and every
/// directory removed, when the guard drops.
///
/// `CACHE_PAGE_REDIS_URL` is ignored: a cluster test cannot run on a standalone
/// server, so it always starts a cluster of its own.
///
/// Tests on one cluster keep apart by namespace: [`store`](Self::store) and
/// [`cache`](Self::cache) give every call a namespace of its own.
#[derive(Debug)]
pub struct RedisCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    port: u16,
    /// The cluster bus port (`--cluster-port`, Redis 7), or `port + 10000`.
    bus_port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// `CLUSTER MYID`, once the node runs.
    id: String,
    client: redis::Client,
}

impl RedisCluster {
    /// Three masters, no replicas, every slot assigned, `cluster_state:ok` on every
    /// node.
    ///
    /// Panics, saying how to install it, if `redis-server` (or `redis-cli`, which comes
    /// with it) is not on `PATH`.
    pub fn start() -> RedisCluster {
        Self::start_nodes(3, 0)
    }

    /// A three-master cluster shared by the tests of this process that hold it at the
    /// same time, for tests that neither stop nodes nor count commands (they keep apart
    /// by namespace). It is started by the first test to ask and stopped when the
    /// last holder drops it, so no process outlives the tests.
    pub fn shared() -> Arc<RedisCluster> {
        static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());
        // A test that panicked while starting it leaves the lock poisoned; the Weak
        // inside is still valid.
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(Self::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    /// Three masters and one replica of each (six nodes), every replica in sync.
    pub fn start_with_replicas() -> RedisCluster {
        Self::start_nodes(6, 1)
    }

    fn start_nodes(count: usize, replicas: usize) -> RedisCluster {
        let binary = redis_server_binary();
        let cli = redis_cli_binary(&binary);
        let mut cluster = RedisCluster {
            binary,
            nodes: Vec::with_capacity(count),
        };
        // Nodes join `cluster` as they start, so a failure below drops (kills) them.
        for _ in 0..count {
            cluster.start_new_node();
        }
        cluster.create(&cli, replicas);
        cluster.wait_until_healthy("the new cluster is ok");
        if replicas > 0 {
            cluster.wait_for_replicas_in_sync();
        }
        cluster
    }

    /// Starts one more node on free ports, in a directory of its own.
    fn start_new_node(&mut self) {
        let major = redis_major_version(&self.binary);
        for _ in 0..PORT_ATTEMPTS {
            let (port, bus_port) = free_ports(major);
            let url = format!("redis://127.0.0.1:{port}/");
            self.nodes.push(Node {
                port,
                bus_port,
                dir: TempDir::new("cache-page-cluster"),
                child: None,
                id: String::new(),
                client: redis::Client::open(url.as_str()).expect("a valid URL"),
            });
            let i = self.nodes.len() - 1;
            match self.launch(i) {
                Ok(()) => return,
                Err(Launch::PortTaken) => {
                    // Another process bound a port between our probe and the start.
                    self.nodes.pop();
                }
                Err(Launch::Failed(why)) => panic!("a cluster node did not start: {why}"),
            }
        }
        panic!("a cluster node did not start: no free ports after {PORT_ATTEMPTS} attempts");
    }

    /// Starts the process of node `i` on its ports and in its directory (keeping its
    /// `nodes.conf`), and waits until it answers.
    fn launch(&mut self, i: usize) -> Result<(), Launch> {
        let major = redis_major_version(&self.binary);
        let node = &mut self.nodes[i];
        let log = node.dir.path().join("redis.log");
        // A restart appends to the log; start from a clean one so errors are ours.
        let _ = fs::remove_file(&log);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(node.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            // A replica may take over however long it was out of touch, and syncs at
            // once: the failover test must not depend on replication timing.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(node.dir.path())
            .arg("--logfile")
            .arg(&log);
        if major >= 7 {
            cmd.args(["--cluster-port", &node.bus_port.to_string()]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| Launch::Failed(format!("cannot run {}: {e}", self.binary.display())))?;
        let pid = child.id();
        node.child = Some(child);
        let ready = node.wait_until_ready(pid);
        if ready.is_err() {
            node.kill();
        }
        match ready {
            Ok(id) => {
                node.id = id;
                Ok(())
            }
            Err(why) => {
                let log = fs::read_to_string(&log).unwrap_or_default();
                if why == "another server answers on the port"
                    || log.contains("Address already in use")
                {
                    Err(Launch::PortTaken)
                } else {
                    Err(Launch::Failed(format!(
                        "port {}: {why}\n--- redis.log ---\n{log}",
                        node.port
                    )))
                }
            }
        }
    }

    /// `redis-cli --cluster create`, bounded by [`CREATE_TIMEOUT`].
    fn create(&self, cli: &PathBuf, replicas: usize) {
        let dir = self.nodes[0].dir.path();
        let out_path = dir.join("cluster-create.log");
        let out = File::create(&out_path).expect("create the redis-cli log");
        let mut cmd = Command::new(cli);
        cmd.args(["--cluster", "create"]);
        for node in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", node.port));
        }
        cmd.args(["--cluster-replicas", &replicas.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("a log handle")))
            .stderr(Stdio::from(out));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.display()));
        let deadline = Instant::now() + CREATE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("redis-cli can be waited for") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            // Bounded polling: the interval between checks, not a wait for an event.
            std::thread::sleep(POLL);
        };
        if status.is_none_or(|s| !s.success()) {
            let log = fs::read_to_string(&out_path).unwrap_or_default();
            panic!(
                "redis-cli --cluster create failed ({}):\n{log}",
                status.map_or_else(
                    || format!("no end within {CREATE_TIMEOUT:?}"),
                    |s| s.to_string()
                )
            );
        }
    }

    /// The nodes' URLs, `redis://127.0.0.1:<port>/`, stopped nodes included: the seed
    /// nodes to give a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// The number of nodes, stopped ones included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// Whether node `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Whether node `i` is a master, as it says itself (`ROLE`).
    pub fn is_master(&self, i: usize) -> bool {
        let mut conn = self.nodes[i]
            .connection()
            .unwrap_or_else(|e| panic!("node {i} does not answer: {e}"));
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("ROLE on node {i}: {e}"));
        matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
    }

    /// The node serving `key`'s hash slot, as a running node sees the cluster.
    pub fn node_for_key(&self, key: &str) -> usize {
        let (i, node) = self.running().next().expect("a running node to ask");
        let mut conn = node
            .connection()
            .unwrap_or_else(|e| panic!("node {i} does not answer: {e}"));
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT on node {i}: {e}"));
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("CLUSTER NODES on node {i}: {e}"));
        let owner = parse_cluster_nodes(&nodes)
            .into_iter()
            .find(|line| line.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .unwrap_or_else(|| panic!("no node serves slot {slot} of {key:?}:\n{nodes}"));
        self.nodes
            .iter()
            .position(|n| n.id == owner.id)
            .unwrap_or_else(|| panic!("slot {slot} is served by an unknown node {}", owner.id))
    }

    /// Kills node `i` (`SIGKILL`: nothing is saved) and reaps it. Its port and
    /// directory are kept for [`restart_node`](Self::restart_node). Does not wait for
    /// the cluster to notice.
    pub fn stop_node(&mut self, i: usize) {
        assert!(self.is_running(i), "node {i} is not running");
        self.nodes[i].kill();
    }

    /// Starts node `i` again on the same port and in the same directory (so it keeps
    /// its `nodes.conf`: its identity and slots), empty, and waits until the cluster is
    /// healthy again.
    pub fn restart_node(&mut self, i: usize) {
        self.restart_nodes(&[i]);
    }

    /// [`restart_node`](Self::restart_node) for several nodes at once, such as every
    /// node of a cluster that was stopped whole: waits until the cluster is healthy
    /// once they all run.
    pub fn restart_nodes(&mut self, nodes: &[usize]) {
        for &i in nodes {
            if self.is_running(i) {
                self.nodes[i].kill();
            }
            if let Err(e) = self.launch(i) {
                let why = match e {
                    Launch::PortTaken => "another process took its port".to_owned(),
                    Launch::Failed(why) => why,
                };
                panic!(
                    "node {i} did not restart on port {}: {why}",
                    self.nodes[i].port
                );
            }
        }
        self.wait_until_healthy(&format!("nodes {nodes:?} rejoined the cluster"));
    }

    /// Kills master `i` and waits until a replica took its slots over and the cluster
    /// is healthy again (about the node timeout, 2 s, plus an election). Panics if
    /// node `i` is not a master.
    pub fn kill_master(&mut self, i: usize) {
        assert!(self.is_master(i), "node {i} is not a master");
        let id = self.nodes[i].id.clone();
        self.nodes[i].kill();
        self.wait_until(
            HEALTHY_TIMEOUT,
            "a replica took over the killed master",
            |c| {
                c.running().all(|(_, node)| {
                    node.cluster_nodes().is_ok_and(|lines| {
                        lines
                            .iter()
                            .any(|l| l.id == id && l.flags.contains(&"fail") && l.slots.is_empty())
                    })
                }) && c.is_healthy()
            },
        );
    }

    /// Waits until every running node says `cluster_state:ok` with every slot served,
    /// and sees every other running node connected and not failing.
    pub fn wait_until_healthy(&self, what: &str) {
        self.wait_until(HEALTHY_TIMEOUT, what, RedisCluster::is_healthy);
    }

    fn is_healthy(&self) -> bool {
        let running: Vec<&str> = self.running().map(|(_, n)| n.id.as_str()).collect();
        self.running().all(|(_, node)| {
            let Ok(info) = node.cluster_info() else {
                return false;
            };
            let Ok(lines) = node.cluster_nodes() else {
                return false;
            };
            info_field(&info, "cluster_state") == Some("ok")
                && info_field(&info, "cluster_slots_ok") == Some("16384")
                && running.iter().all(|id| {
                    lines.iter().any(|l| {
                        l.id == *id
                            && l.link == "connected"
                            && !l.flags.iter().any(|f| f.starts_with("fail"))
                    })
                })
        })
    }

    /// Waits until every replica has its link to its master up.
    fn wait_for_replicas_in_sync(&self) {
        self.wait_until(HEALTHY_TIMEOUT, "every replica is in sync", |c| {
            c.running().all(|(_, node)| {
                let Ok(mut conn) = node.connection() else {
                    return false;
                };
                let Ok(info) = redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut conn)
                else {
                    return false;
                };
                info_field(&info, "role") == Some("master")
                    || info_field(&info, "master_link_status") == Some("up")
            })
        });
    }

    fn wait_until(&self, timeout: Duration, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting until {what}\n{}",
                    self.describe()
                );
            }
            // Bounded polling: the interval between checks, not a wait for an event.
            std::thread::sleep(POLL);
        }
    }

    /// Every running node's `CLUSTER NODES`, for failure messages.
    fn describe(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let state = if node.child.is_some() {
                node.connection()
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut c))
                    .unwrap_or_else(|e| format!("no answer: {e}"))
            } else {
                "stopped".to_owned()
            };
            out.push_str(&format!("--- node {i} (port {}) ---\n{state}\n", node.port));
        }
        out
    }

    fn running(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.child.is_some())
    }

    /// A [`RedisClusterStore`] on this cluster, in a namespace of its own named after
    /// `test`. Store operations may take up to 5 s, so a loaded machine does not turn a
    /// test into a miss; tests of the timeouts build their store themselves.
    pub fn store(&self, test: &str) -> RedisClusterStore {
        self.store_in(&unique_namespace(test))
    }

    /// A [`RedisClusterStore`] on this cluster in `namespace`, such as another
    /// process's view of a store's namespace.
    pub fn store_in(&self, namespace: &str) -> RedisClusterStore {
        RedisClusterStore::builder(self.urls())
            .namespace(namespace)
            .command_timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("valid Redis URLs")
    }

    /// A [`Cache`] on [`store`](Self::store)`(test)` that waits up to 5 s for it.
    pub fn cache(&self, test: &str) -> Cache {
        crate::patient_cache(self.store(test))
    }

    /// A new cluster connection for commands of the test's own (commands on several
    /// keys are split by slot by redis-rs; `KEYS` asks every master).
    pub async fn connection(&self) -> ClusterConnection {
        redis::cluster::ClusterClient::builder(self.urls())
            .connection_timeout(Duration::from_secs(5))
            .response_timeout(Duration::from_secs(5))
            .build()
            .expect("valid Redis URLs")
            .get_async_connection()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the cluster: {e}"))
    }

    /// Runs one command on a new cluster connection, e.g.
    /// `cluster.cmd::<Vec<String>>(&["KEYS", "ns:page:*"])`; panics on an error reply.
    pub async fn cmd<T: FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        self.query(&cmd).await
    }

    /// Runs a command built with [`redis::cmd`] (for binary arguments) on a new
    /// cluster connection; panics on an error reply.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query_async(&mut self.connection().await)
            .await
            .unwrap_or_else(|e| panic!("redis command {cmd:?} failed: {e}"))
    }

    /// The `calls` count of every command in `INFO commandstats`, summed over the
    /// running nodes.
    pub fn command_calls(&self) -> std::collections::BTreeMap<String, u64> {
        let mut total = std::collections::BTreeMap::new();
        for info in self.info("commandstats") {
            for (name, calls) in crate::parse_command_calls(&info) {
                *total.entry(name).or_insert(0) += calls;
            }
        }
        total
    }

    /// One section of `INFO` from each running node.
    fn info(&self, section: &str) -> Vec<String> {
        self.running()
            .map(|(i, node)| {
                let mut conn = node
                    .connection()
                    .unwrap_or_else(|e| panic!("node {i} does not answer: {e}"));
                redis::cmd("INFO")
                    .arg(section)
                    .query(&mut conn)
                    .unwrap_or_else(|e| panic!("INFO on node {i}: {e}"))
            })
            .collect()
    }
}

impl RedisCluster {
    /// The error replies every running node sent so far, by error code (`CROSSSLOT`,
    /// `MOVED`…), from `INFO errorstats` (Redis 6.2).
    pub fn error_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut total = std::collections::BTreeMap::new();
        for info in self.info("errorstats") {
            for line in info.lines() {
                let Some((code, stats)) = line
                    .trim()
                    .strip_prefix("errorstat_")
                    .and_then(|l| l.split_once(':'))
                else {
                    continue;
                };
                let count = stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("count="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                *total.entry(code.to_owned()).or_insert(0) += count;
            }
        }
        total
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let conn = self
            .client
            .get_connection_with_timeout(Duration::from_millis(500))?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(conn)
    }

    fn cluster_info(&self) -> redis::RedisResult<String> {
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut self.connection()?)
    }

    fn cluster_nodes(&self) -> redis::RedisResult<Vec<NodeLine>> {
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut self.connection()?)?;
        Ok(parse_cluster_nodes(&text))
    }

    /// Polls `PING` until the node answers, at most [`NODE_START_TIMEOUT`]; checks that
    /// the answer comes from process `pid`, and returns the node's id.
    fn wait_until_ready(&mut self, pid: u32) -> Result<String, String> {
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("redis-server exited with {status}"));
            }
            match self.identify() {
                Ok((server_pid, id)) if server_pid == pid => return Ok(id),
                Ok(_) => return Err("another server answers on the port".to_owned()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("no answer within {NODE_START_TIMEOUT:?}: {e}"));
                }
                Err(_) => {}
            }
            // Bounded polling: the interval between attempts, not a wait for an event.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The pid and cluster id of the server answering on the node's port.
    fn identify(&self) -> redis::RedisResult<(u32, String)> {
        let mut conn = self.connection()?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn)?;
        let pid = info_field(&info, "process_id")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut conn)?;
        Ok((pid, id))
    }
}

/// Why a node start failed.
enum Launch {
    PortTaken,
    Failed(String),
}

/// One line of `CLUSTER NODES`:
/// `<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>…`.
#[derive(Debug)]
struct NodeLine {
    id: String,
    flags: Vec<&'static str>,
    link: String,
    /// Slot ranges served, inclusive (migrating/importing entries left out).
    slots: Vec<(u16, u16)>,
}

/// The flags `CLUSTER NODES` can show, as static strings.
const FLAGS: &[&str] = &[
    "myself",
    "master",
    "slave",
    "fail?",
    "fail",
    "handshake",
    "noaddr",
    "nofailover",
    "noflags",
];

fn parse_cluster_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let flags = fields[2]
                .split(',')
                .filter_map(|f| FLAGS.iter().find(|k| **k == f).copied())
                .collect();
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => {
                        let n = s.parse().ok()?;
                        Some((n, n))
                    }
                })
                .collect();
            Some(NodeLine {
                id: fields[0].to_owned(),
                flags,
                link: fields[7].to_owned(),
                slots,
            })
        })
        .collect()
}

/// A free client port and a free cluster bus port. Before Redis 7 the bus port is
/// always `port + 10000`, so the client port is picked so that both are free.
fn free_ports(major: u32) -> (u16, u16) {
    if major >= 7 {
        let port = free_port();
        let mut bus = free_port();
        while bus == port {
            bus = free_port();
        }
        return (port, bus);
    }
    for _ in 0..1000 {
        let port = free_port();
        if let Some(bus) = port.checked_add(10000)
            && TcpListener::bind(("127.0.0.1", bus)).is_ok()
        {
            return (port, bus);
        }
    }
    panic!("no free port p with p + 10000 free (the cluster bus port before Redis 7)");
}

/// `redis-cli`, next to `redis-server` or on `PATH`.
fn redis_cli_binary(server: &std::path::Path) -> PathBuf {
    let beside = server.with_file_name("redis-cli");
    if beside.is_file() {
        return beside;
    }
    crate::on_path("redis-cli").unwrap_or_else(|| {
        panic!(
            "redis-cli was not found next to {} or on PATH. The cache-page cluster tests \
                 create their cluster with `redis-cli --cluster create`; redis-cli comes with \
                 redis-server (Debian/Ubuntu: `apt-get install redis-server` or \
                 `apt-get install redis-tools`; macOS: `brew install redis`)",
            server.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail - 1426238316232 1426238315000 5 disconnected
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383 16000
";
        let lines = parse_cluster_nodes(text);
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0].flags, ["slave"]);
        assert!(lines[0].slots.is_empty());
        assert_eq!(lines[1].slots, [(5461, 10922)]);
        assert_eq!(lines[2].flags, ["myself", "master"]);
        assert_eq!(lines[2].slots, [(0, 5460)]);
        assert_eq!(lines[3].flags, ["master", "fail"]);
        assert_eq!(lines[3].link, "disconnected");
        assert_eq!(lines[4].slots, [(10923, 16383), (16000, 16000)]);
    }
}
