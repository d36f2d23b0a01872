//! A private `redis-server` per test, on a free port of 127.0.0.1, or the server named
//! by `CACHE_PAGE_REDIS_URL`.

use std::{
    collections::BTreeMap,
    env, fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cache_page_runtime::{Cache, RedisStore};
use redis::{FromRedisValue, aio::MultiplexedConnection};

/// The environment variable that points the tests at an existing server.
pub const REDIS_URL_VAR: &str = "CACHE_PAGE_REDIS_URL";

/// How long a starting server has to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a start is retried when another process took the free port first.
const PORT_ATTEMPTS: usize = 20;

/// A Redis server for one test.
///
/// [`start`](Self::start) launches a private `redis-server` (no persistence, its files
/// in a temporary directory) on a free port of 127.0.0.1, or uses the server named by
/// `CACHE_PAGE_REDIS_URL`. A private server is killed, reaped and its directory
/// removed when the guard drops.
///
/// Tests on one server keep apart by namespace: [`store`](Self::store) and
/// [`cache`](Self::cache) give every call a namespace of its own.
#[derive(Debug)]
pub struct RedisServer {
    url: String,
    port: u16,
    client: redis::Client,
    private: Option<Private>,
}

#[derive(Debug)]
struct Private {
    binary: PathBuf,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// The server for a test: the one `CACHE_PAGE_REDIS_URL` names, or else a private
    /// `redis-server` on a free port.
    ///
    /// Panics, saying how to install it, if `redis-server` is not on `PATH` and no
    /// URL is given.
    pub fn start() -> RedisServer {
        match external_url() {
            Some(url) => Self::external(url),
            None => Self::start_private_server(),
        }
    }

    /// A private `redis-server`, for tests that stop, freeze or count the commands of
    /// their server. With `CACHE_PAGE_REDIS_URL` set, prints why the test is skipped
    /// and returns `None`: those tests would disrupt a shared server.
    pub fn start_private(test: &str) -> Option<RedisServer> {
        if external_url().is_some() {
            eprintln!(
                "skipping {test}: it needs a private redis-server it can stop or measure; \
                 unset {REDIS_URL_VAR} to run it"
            );
            return None;
        }
        Some(Self::start_private_server())
    }

    fn external(url: String) -> RedisServer {
        let client = redis::Client::open(url.as_str())
            .unwrap_or_else(|e| panic!("{REDIS_URL_VAR}={url:?} is not a Redis URL: {e}"));
        let port = match client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(_, port) | redis::ConnectionAddr::TcpTls { port, .. } => {
                *port
            }
            _ => 0,
        };
        let mut server = RedisServer {
            url,
            port,
            client,
            private: None,
        };
        server.wait_until_ready(None).unwrap_or_else(|e| {
            panic!(
                "the Redis server at {REDIS_URL_VAR}={:?} does not answer: {e}",
                server.url
            )
        });
        server
    }

    fn start_private_server() -> RedisServer {
        let binary = redis_server_binary();
        let mut dir = TempDir::new("cache-page-redis");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let url = format!("redis://127.0.0.1:{port}/");
            let client = redis::Client::open(url.as_str()).expect("a valid URL");
            let mut server = RedisServer {
                url,
                port,
                client,
                private: Some(Private {
                    binary: binary.clone(),
                    dir,
                    child: None,
                }),
            };
            match server.launch() {
                Ok(()) => return server,
                Err(Launch::PortTaken) => {
                    // Another process bound the port between our probe and the start.
                    dir = server.private.take().expect("private").dir;
                }
                Err(Launch::Failed(why)) => panic!("redis-server did not start: {why}"),
            }
        }
        panic!("redis-server did not start: no free port after {PORT_ATTEMPTS} attempts");
    }

    /// Starts the process on `self.port` and waits until it answers.
    fn launch(&mut self) -> Result<(), Launch> {
        let port = self.port;
        let private = self
            .private
            .as_mut()
            .expect("only a private server is launched");
        let log = private.dir.path().join("redis.log");
        // A restart appends to the log; start from a clean one so errors are ours.
        let _ = fs::remove_file(&log);
        let mut cmd = Command::new(&private.binary);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(private.dir.path())
            .arg("--logfile")
            .arg(&log);
        if redis_major_version(&private.binary) >= 7 {
            // DEBUG is off by default since Redis 7; tests may use it (DEBUG SLEEP).
            cmd.args(["--enable-debug-command", "local"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| Launch::Failed(format!("cannot run {}: {e}", private.binary.display())))?;
        let pid = child.id();
        private.child = Some(child);
        let ready = self.wait_until_ready(Some(pid));
        if ready.is_err() {
            self.kill();
        }
        match ready {
            Ok(()) => Ok(()),
            Err(NotReady::OtherServer) => Err(Launch::PortTaken),
            Err(why) => {
                let log = fs::read_to_string(&log).unwrap_or_default();
                if log.contains("Address already in use") {
                    Err(Launch::PortTaken)
                } else {
                    Err(Launch::Failed(format!("{why}\n--- redis.log ---\n{log}")))
                }
            }
        }
    }

    /// Polls `PING` until the server answers, for at most [`START_TIMEOUT`]. With
    /// `pid`, also checks that the server answering is that process (not another one
    /// that took the port) and that the process is still running.
    fn wait_until_ready(&mut self, pid: Option<u32>) -> Result<(), NotReady> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.private.as_mut().and_then(|p| p.child.as_mut())
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(NotReady::Exited(status));
            }
            match self.ping_once() {
                Ok(server_pid) => match pid {
                    Some(pid) if server_pid != pid => return Err(NotReady::OtherServer),
                    _ => return Ok(()),
                },
                Err(e) if Instant::now() >= deadline => {
                    return Err(NotReady::Silent(e.to_string()));
                }
                Err(_) => {}
            }
            // Bounded polling: the interval between attempts, not a wait for an event.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// One `PING`, then the pid of the server that answered.
    fn ping_once(&self) -> redis::RedisResult<u32> {
        let mut conn = self
            .client
            .get_connection_with_timeout(Duration::from_millis(500))?;
        conn.set_read_timeout(Some(Duration::from_secs(1)))?;
        let pong: String = redis::cmd("PING").query(&mut conn)?;
        if pong != "PONG" {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "unexpected answer to PING",
            )));
        }
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn)?;
        Ok(info_field(&info, "process_id")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0))
    }

    /// The server's URL, `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this is a private server (not one named by `CACHE_PAGE_REDIS_URL`).
    pub fn is_private(&self) -> bool {
        self.private.is_some()
    }

    /// The process id of a private server while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.private.as_ref()?.child.as_ref().map(Child::id)
    }

    /// The temporary directory of a private server (its working dir and log).
    pub fn dir(&self) -> Option<&Path> {
        self.private.as_ref().map(|p| p.dir.path())
    }

    /// A plain client of the server, for commands of the test's own.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A [`RedisStore`] on this server, in a namespace of its own named after `test`.
    /// Store operations may take up to 5 s, so a loaded machine does not turn a test
    /// into a miss; tests of the timeouts build their store themselves.
    pub fn store(&self, test: &str) -> RedisStore {
        RedisStore::builder(self.url())
            .namespace(unique_namespace(test))
            .command_timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a valid Redis URL")
    }

    /// A [`Cache`] on [`store`](Self::store)`(test)` that waits up to 5 s for it.
    pub fn cache(&self, test: &str) -> Cache {
        crate::patient_cache(self.store(test))
    }

    /// The commands that `f` made the server run (`INFO` itself left out), with how
    /// many times each ran. Meant for a private server: on a shared one, other tests'
    /// commands would count too.
    pub async fn commands_during(&self, f: impl AsyncFnOnce()) -> BTreeMap<String, u64> {
        let mut cli = self.cli().await;
        let before = cli.command_calls().await;
        f().await;
        let after = cli.command_calls().await;
        after
            .into_iter()
            .filter(|(name, _)| name != "info")
            .filter_map(|(name, calls)| {
                let grown = calls - before.get(&name).copied().unwrap_or(0);
                (grown > 0).then_some((name, grown))
            })
            .collect()
    }

    /// Counts, from now on, the commands the server runs whose text contains
    /// `needle` (a key, say), through `MONITOR`. The count is read with
    /// [`Watched::count`]; it stops when the [`Watched`] is dropped.
    pub async fn watch_commands(&self, needle: &str) -> Watched {
        use futures_util::StreamExt;
        let monitor = self
            .client
            .get_async_monitor()
            .await
            .unwrap_or_else(|e| panic!("cannot MONITOR {}: {e}", self.url));
        let count = Arc::new(AtomicU64::new(0));
        let needle = needle.to_owned();
        let task = tokio::spawn({
            let count = count.clone();
            async move {
                let mut lines = monitor.into_on_message::<String>();
                while let Some(line) = lines.next().await {
                    if line.contains(&needle) {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        Watched { count, task }
    }

    /// A new connection for commands of the test's own.
    pub async fn cli(&self) -> RedisCli {
        let conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url));
        RedisCli { conn }
    }

    /// Runs one command on a new connection, e.g. `server.cmd::<Vec<String>>(&["KEYS", "*"])`.
    pub async fn cmd<T: FromRedisValue>(&self, args: &[&str]) -> T {
        self.cli().await.cmd(args).await
    }

    /// Kills the server (`SIGKILL`, so nothing is saved or flushed) and reaps it. The
    /// port is kept for [`restart`](Self::restart).
    ///
    /// Panics on a server named by `CACHE_PAGE_REDIS_URL`: see [`start_private`](Self::start_private).
    pub fn stop(&mut self) {
        assert!(
            self.is_private(),
            "only a private redis-server can be stopped"
        );
        self.kill();
    }

    /// Starts the server again on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(
            self.is_private(),
            "only a private redis-server can be restarted"
        );
        self.kill();
        if let Err(e) = self.launch() {
            let why = match e {
                Launch::PortTaken => "another process took its port".to_owned(),
                Launch::Failed(why) => why,
            };
            panic!("redis-server did not restart on port {}: {why}", self.port);
        }
    }

    /// Freezes the server (`SIGSTOP`): connections stay open and commands get no answer,
    /// as with a server stuck in a long command. [`resume`](Self::resume) undoes it.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a server frozen by [`freeze`](Self::freeze) (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self
            .private
            .as_ref()
            .and_then(|p| p.child.as_ref())
            .map(Child::id)
            .expect("only a running private redis-server can be signalled");
        let status = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .expect("the kill command runs");
        assert!(status.success(), "kill {sig} {pid} failed: {status}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.private.as_mut().and_then(|p| p.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a start failed.
enum Launch {
    PortTaken,
    Failed(String),
}

/// Why a server is not answering.
#[derive(Debug)]
enum NotReady {
    /// The process exited.
    Exited(std::process::ExitStatus),
    /// The port is answered by another server than the process started.
    OtherServer,
    /// No answer to `PING` within [`START_TIMEOUT`].
    Silent(String),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Exited(status) => write!(f, "redis-server exited with {status}"),
            NotReady::OtherServer => f.write_str("the port is answered by another server"),
            NotReady::Silent(e) => write!(f, "no answer within {START_TIMEOUT:?}: {e}"),
        }
    }
}

/// A connection to a [`RedisServer`] for the test's own commands.
#[derive(Clone)]
pub struct RedisCli {
    conn: MultiplexedConnection,
}

impl std::fmt::Debug for RedisCli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCli").finish_non_exhaustive()
    }
}

impl RedisCli {
    /// Runs a command given as strings; panics on an error reply.
    pub async fn cmd<T: FromRedisValue>(&mut self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        self.query(&cmd).await
    }

    /// Runs a command built with [`redis::cmd`] (for binary arguments); panics on an
    /// error reply.
    pub async fn query<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> T {
        cmd.query_async(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("redis command {cmd:?} failed: {e}"))
    }

    /// The `calls` count of every command in `INFO commandstats`, by command name
    /// (`get`, `mget`, `client|setinfo`…).
    pub async fn command_calls(&mut self) -> BTreeMap<String, u64> {
        let info: String = self.cmd(&["INFO", "commandstats"]).await;
        parse_command_calls(&info)
    }
}

/// Commands counted by [`RedisServer::watch_commands`].
#[derive(Debug)]
pub struct Watched {
    count: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Watched {
    /// How many matching commands the server has run since the watch began.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parses the `cmdstat_<name>:calls=<n>,…` lines of `INFO commandstats`.
pub fn parse_command_calls(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
}

/// A namespace no other test of this run uses: `cpt-<test>-<pid>-<n>`.
pub fn unique_namespace(test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("cpt-{test}-{}-{n}", std::process::id())
}

/// A port of 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the OS gives a free port")
}

fn external_url() -> Option<String> {
    env::var(REDIS_URL_VAR)
        .ok()
        .filter(|u| !u.trim().is_empty())
}

pub(crate) fn redis_server_binary() -> PathBuf {
    static BINARY: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINARY
        .get_or_init(|| crate::on_path("redis-server"))
        .clone()
        .unwrap_or_else(|| {
            panic!(
                "redis-server was not found on PATH. The cache-page integration tests start \
                 a private redis-server; install it (Debian/Ubuntu: `apt-get install \
                 redis-server`; macOS: `brew install redis`), or point the tests at a running \
                 server with {REDIS_URL_VAR}=redis://127.0.0.1:6379/"
            )
        })
}

/// The major version of `redis-server`, from `redis-server --version`
/// (`Redis server v=7.0.15 …`); 0 if it cannot be told.
pub(crate) fn redis_major_version(binary: &Path) -> u32 {
    static MAJOR: OnceLock<u32> = OnceLock::new();
    *MAJOR.get_or_init(|| {
        let out = Command::new(binary).arg("--version").output().ok();
        out.and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let v = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
            v.split('.').next()?.parse().ok()
        })
        .unwrap_or(0)
    })
}

/// A directory removed (with its contents) on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        // A directory left by a crashed run with the same pid is reused from empty.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commandstats() {
        let info = "# Commandstats\r\ncmdstat_get:calls=12,usec=30,usec_per_call=2.50,\
                    rejected_calls=0,failed_calls=0\r\ncmdstat_client|setinfo:calls=2,usec=1\r\n";
        let calls = parse_command_calls(info);
        assert_eq!(calls["get"], 12);
        assert_eq!(calls["client|setinfo"], 2);
        assert_eq!(calls.len(), 2);
    }

    #[test]
    fn namespaces_are_unique() {
        assert_ne!(unique_namespace("t"), unique_namespace("t"));
    }
}
