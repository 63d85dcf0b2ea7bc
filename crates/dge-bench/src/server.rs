//! The processes under test: `dge-idp dev` and the `oidc-provider` reference, both
//! on free loopback ports, and their memory as Linux reports it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A free port on 127.0.0.1 (bound, then released for the child to take).
///
/// # Errors
/// When no port can be bound.
pub(crate) fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A running `dge-idp dev`.
pub(crate) struct Idp {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) http: String,
    pub(crate) grpc: String,
    pub(crate) data_dir: PathBuf,
    /// From spawn to the first `GET /readyz` answered 200, migrations included.
    pub(crate) start_to_ready: Duration,
}

/// How to start `dge-idp dev`.
pub(crate) struct IdpOptions<'a> {
    pub(crate) bin: &'a Path,
    pub(crate) data_dir: PathBuf,
    pub(crate) database_url: Option<String>,
    pub(crate) redis_url: Option<String>,
    pub(crate) redis_prefix: String,
    /// `RUST_LOG` of the server.
    pub(crate) log_filter: String,
    /// The server's `--worker-threads`.
    pub(crate) worker_threads: usize,
}

impl Idp {
    /// Spawns the server and waits until `/readyz` answers 200.
    ///
    /// # Errors
    /// When it cannot be spawned, exits, or is not ready within 60 s.
    pub(crate) async fn start(options: IdpOptions<'_>) -> anyhow::Result<Self> {
        let http = free_addr()?;
        let grpc = free_addr()?;
        std::fs::create_dir_all(&options.data_dir)?;
        let mut command = Command::new(options.bin);
        command
            .arg("dev")
            .arg("--data-dir")
            .arg(&options.data_dir)
            .arg("--http-addr")
            .arg(http.to_string())
            .arg("--grpc-addr")
            .arg(grpc.to_string())
            .arg("--redis-prefix")
            .arg(&options.redis_prefix)
            // Every simulated person comes from 127.0.0.1: the per-address limit of
            // /authorize (300 a minute by default) would measure the limit, not us.
            .arg("--authorize-max-requests")
            .arg("1000000")
            // The same for the sign-ups filed from one address (10 an hour by default).
            .arg("--signups-per-address-max")
            .arg("1000000")
            .arg("--worker-threads")
            .arg(options.worker_threads.to_string())
            // One request log line per request would measure the log, not us: `warn`
            // unless `--idp-log` says otherwise.
            .env("RUST_LOG", &options.log_filter)
            .env_remove("DGE_DEV_DATABASE_URL")
            .env_remove("DGE_DEV_REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                options.data_dir.join("dge-idp.log"),
            )?))
            .kill_on_drop(true);
        if let Some(url) = &options.database_url {
            command.arg("--database-url").arg(url);
        }
        if let Some(url) = &options.redis_url {
            command.arg("--redis-url").arg(url);
        }
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", options.bin.display()))?;
        let pid = child.id().context("dge-idp exited at once")?;
        let http = format!("http://{http}");
        let client = reqwest::Client::builder().no_proxy().build()?;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "dge-idp exited with {status} before it was ready; see {}",
                    options.data_dir.join("dge-idp.log").display()
                );
            }
            if let Ok(answer) = client.get(format!("{http}/readyz")).send().await
                && answer.status() == reqwest::StatusCode::OK
            {
                break;
            }
            if spawned.elapsed() > Duration::from_secs(60) {
                bail!("dge-idp was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Self {
            start_to_ready: spawned.elapsed(),
            child,
            pid,
            http,
            grpc: format!("http://{grpc}"),
            data_dir: options.data_dir,
        })
    }

    /// Resident memory now and its peak since the last [`Idp::reset_peak`], in KiB.
    ///
    /// # Errors
    /// When `/proc/<pid>/status` cannot be read.
    pub(crate) fn memory_kib(&self) -> anyhow::Result<(u64, u64)> {
        memory_kib(self.pid)
    }

    /// Resets the peak resident memory (`VmHWM`) so that the next reading is the
    /// peak of what follows.
    ///
    /// # Errors
    /// When the kernel refuses.
    pub(crate) fn reset_peak(&self) -> anyhow::Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")
            .context("resetting the peak RSS through clear_refs")
    }

    /// Stops the server with SIGTERM (it drains), then kills it after 10 s.
    pub(crate) async fn stop(mut self) {
        terminate(&mut self.child).await;
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
///
/// # Errors
/// When `/proc/<pid>/status` cannot be read or lacks them.
pub(crate) fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SIGTERM through kill(1): the workspace forbids unsafe code, so no libc call.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

/// The `oidc-provider` reference server (`tests/bench/oidc-provider-ref.mjs`).
pub(crate) struct Reference {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) url: String,
}

impl Reference {
    /// Starts it and waits for its "ready" line.
    ///
    /// # Errors
    /// When node is missing, the script fails, or it is not ready within 30 s.
    pub(crate) async fn start(
        node: &Path,
        script: &Path,
        client_id: &str,
        client_secret: &str,
    ) -> anyhow::Result<Self> {
        let addr = free_addr()?;
        let mut child = Command::new(node)
            .arg(script)
            .arg(addr.port().to_string())
            .arg(client_id)
            .arg(client_secret)
            .env("NODE_ENV", "production")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", node.display(), script.display()))?;
        let pid = child.id().context("the reference exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("ready ") {
                    return Ok(());
                }
            }
            bail!("the reference server exited before it was ready")
        })
        .await
        .context("the reference server was not ready within 30 s")?;
        ready?;
        Ok(Self {
            child,
            pid,
            url: format!("http://{addr}"),
        })
    }

    /// Stops it.
    pub(crate) async fn stop(mut self) {
        terminate(&mut self.child).await;
    }
}
