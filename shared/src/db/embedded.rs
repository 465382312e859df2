//! A throwaway Postgres cluster from the machine's own PostgreSQL binaries (initdb + postgres),
//! for `calseta dev` and the test harness when no `DATABASE_URL` is given.
//!
//! Postgres refuses to run as root, so when we are root the cluster is initialised and run as
//! the unprivileged `postgres` user (setuid in the child before exec). The server runs in its
//! own process group: a terminal's Ctrl-C reaches us, and we shut the server down in order.
//!
//! On a shared machine the cluster is private: SCRAM-SHA-256 password auth with a random
//! password per cluster (kept 0600 in the root folder, never logged), TCP on 127.0.0.1 only, and
//! the unix socket inside the 0700 root folder. On Linux the server gets `PR_SET_PDEATHSIG`, so a
//! `kill -9` of its owner stops it too; and a start refuses a folder whose server still runs.

use std::{
    ffi::CString,
    io,
    net::TcpListener,
    os::unix::{
        fs::{OpenOptionsExt, PermissionsExt},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries not found (looked in PG_BIN_DIR, pg_config --bindir, \
         /usr/lib/postgresql/*/bin and PATH). Install them, e.g. `sudo apt-get install -y postgresql`, \
         or set DATABASE_URL to an existing server"
    )]
    BinariesNotFound,
    #[error("running as root but there is no unprivileged `postgres` user to run the server as; create one (`useradd -r postgres`) or set DATABASE_URL")]
    NoUnprivilegedUser,
    #[error(
        "a PostgreSQL server (pid {pid}) still runs on {}; stop it (or the `calseta dev` that owns it) \
         or choose another --data-dir",
        .data.display()
    )]
    InUse { pid: i32, data: PathBuf },
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Folder that will hold `data/`, the socket, the password and `postgres.log`. Wiped on
    /// start, unless a server still runs on it (then the start is refused).
    pub root: PathBuf,
    /// TCP port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// Remove `root` when the cluster stops.
    pub remove_on_stop: bool,
}

/// A running throwaway cluster. Call [`EmbeddedPostgres::stop`]; dropping it also stops it.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    child: Option<Child>,
    /// Keeps the thread that spawned the server alive: the parent-death signal fires when that
    /// thread ends, not only when the process does.
    spawner: Option<mpsc::Sender<()>>,
    root: PathBuf,
    port: u16,
    password: SecretString,
    remove_on_stop: bool,
}

/// The superuser created by initdb; it logs in with the cluster's random password.
pub(crate) const SUPERUSER: &str = "calseta";

/// The superuser's password file in the root folder (0600).
pub(crate) const PASSWORD_FILE: &str = "superuser.password";

impl EmbeddedPostgres {
    /// initdb (≈ 3 s) + start (≈ 0.2 s) + wait until it accepts connections.
    pub fn start(opts: &EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let bin = find_bin_dir().ok_or(EmbeddedError::BinariesNotFound)?;
        let run_as = unprivileged_user()?;
        let root = prepare_root(&opts.root, run_as)?;
        let data = root.join("data");
        // Hex: no escaping in a URL or the password file.
        let password = SecretString::from(hex::encode(rand::random::<[u8; 24]>()));
        let pwfile = root.join(PASSWORD_FILE);
        write_private(&pwfile, password.expose_secret().as_bytes(), run_as)?;
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null());
        let out = as_user(&mut initdb, run_as).output()?;
        if !out.status.success() {
            return Err(EmbeddedError::Step {
                step: "initdb",
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let log = std::fs::File::create(root.join("postgres.log"))?;
        if let Some((uid, gid)) = run_as {
            chown(&root.join("postgres.log"), uid, gid)?;
        }
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(&root)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_permissions=0700",
                // Throwaway data: durability settings off, it only slows tests and demos.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        as_user(&mut cmd, run_as);
        die_with_parent(&mut cmd);
        let (child, spawner) = spawn_from_keeper(cmd)?;
        let mut pg = Self {
            child: Some(child),
            spawner: Some(spawner),
            root,
            port,
            password,
            remove_on_stop: opts.remove_on_stop,
        };
        pg.wait_ready(Duration::from_secs(30))?;
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `db` as the superuser. It holds the password: do not log it.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{db}",
            self.password.expose_secret(),
            self.port
        )
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    let log = std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default();
                    self.child = None;
                    return Err(EmbeddedError::Step {
                        step: "postgres start",
                        detail: format!("exited with {status}: {}", log.trim()),
                    });
                }
            }
            // The server creates this file once it accepts connections on the socket.
            let pid_file = std::fs::read_to_string(self.root.join("data/postmaster.pid")).unwrap_or_default();
            if pid_file.lines().nth(7).is_some_and(|l| l.trim() == "ready")
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EmbeddedError::Step {
                    step: "postgres start",
                    detail: "not ready after 30 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown (SIGINT: abort open transactions, then exit), waiting up to 15 s before
    /// SIGKILL; then the data folder is removed when asked.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as libc::pid_t;
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        // The server is gone: its keeper thread may end now.
        self.spawner = None;
        if self.remove_on_stop {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_bin_dir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(d) = std::env::var("PG_BIN_DIR") {
        let d = PathBuf::from(d);
        if has(&d) {
            return Some(d);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&d) {
            return Some(d);
        }
    }
    // Debian/Ubuntu keep server binaries in a versioned folder off PATH; prefer the newest.
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .filter(|(_, d)| has(d))
            .collect();
        versions.sort();
        if let Some((_, d)) = versions.pop() {
            return Some(d);
        }
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has(d)))
}

/// `Some((uid, gid))` of `postgres` when we are root, `None` when we can run it ourselves.
fn unprivileged_user() -> Result<Option<(u32, u32)>, EmbeddedError> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").map_err(|e| EmbeddedError::Step {
        step: "user",
        detail: e.to_string(),
    })?;
    // SAFETY: getpwnam returns a pointer into static storage or null; read it at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(EmbeddedError::NoUnprivilegedUser);
    }
    // SAFETY: non-null result of getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn as_user(cmd: &mut Command, run_as: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = run_as {
        // std drops supplementary groups when changing uid as root.
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}

/// The server inherits a parent-death signal (Linux): when the thread that spawned it ends — the
/// whole stack on `kill -9` — the postmaster gets SIGINT (fast shutdown) instead of living on
/// as an orphan in its own process group.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec (after std's setuid, which would clear
    // the setting) and only makes async-signal-safe calls, without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect: then nobody would signal us.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Spawns `cmd` from a dedicated thread that lives until the returned sender is dropped: the
/// parent-death signal is tied to the spawning thread, and the caller's thread (a tokio
/// blocking thread, a test thread) may end long before the cluster should.
fn spawn_from_keeper(mut cmd: Command) -> Result<(Child, mpsc::Sender<()>), EmbeddedError> {
    let (child_tx, child_rx) = mpsc::channel();
    let (keep_tx, keep_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("calseta-pg-keeper".into())
        .spawn(move || {
            let _ = child_tx.send(cmd.spawn());
            // Returns when the sender is dropped (stop) or the process exits.
            let _ = keep_rx.recv();
        })?;
    let child = child_rx.recv().map_err(|e| EmbeddedError::Step {
        step: "postgres spawn",
        detail: e.to_string(),
    })??;
    Ok((child, keep_tx))
}

/// Writes a 0600 file readable by the server user only (and us).
fn write_private(path: &Path, contents: &[u8], run_as: Option<(u32, u32)>) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    if let Some((uid, gid)) = run_as {
        chown(path, uid, gid)?;
    }
    Ok(())
}

/// The pid of a server still running on `root/data`, from its `postmaster.pid`.
pub(crate) fn running_server(root: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(root.join("data/postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    // SAFETY: signal 0 only checks that the pid exists (EPERM: it exists, owned by another user).
    let alive = unsafe { libc::kill(pid, 0) } == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !alive {
        return None;
    }
    // A stale file whose pid was recycled by another program is not a running cluster.
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) if !comm.trim().starts_with("postgres") => None,
        _ => Some(pid),
    }
}

/// Creates a fresh private (0700) root folder the server user can write, refusing one whose
/// server still runs. When we run as root and the chosen folder is not reachable for that user
/// (e.g. under a 0700 home), falls back to the temp dir.
fn prepare_root(wanted: &Path, run_as: Option<(u32, u32)>) -> Result<PathBuf, EmbeddedError> {
    if let Some(pid) = running_server(wanted) {
        return Err(EmbeddedError::InUse {
            pid,
            data: wanted.join("data"),
        });
    }
    let _ = std::fs::remove_dir_all(wanted);
    std::fs::create_dir_all(wanted)?;
    let root = wanted.canonicalize()?;
    // Private: the socket, the password file and the log live here.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
    let Some((uid, gid)) = run_as else { return Ok(root) };
    chown(&root, uid, gid)?;
    let reachable = Command::new("test")
        .arg("-w")
        .arg(&root)
        .uid(uid)
        .gid(gid)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if reachable {
        return Ok(root);
    }
    let _ = std::fs::remove_dir_all(&root);
    let fallback = std::env::temp_dir().join(format!("calseta-pg-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&fallback)?;
    std::fs::set_permissions(&fallback, std::fs::Permissions::from_mode(0o700))?;
    chown(&fallback, uid, gid)?;
    tracing::info!(path = %fallback.display(), "data dir not reachable by the postgres user; using a temp dir");
    Ok(fallback)
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
