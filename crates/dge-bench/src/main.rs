//! `dge-bench`: starts `dge-idp dev` (embedded default, or PostgreSQL and Redis in
//! a throw-away database), loads it from this separate process over loopback, and
//! prints one table of requests per second, latencies and the server's peak memory,
//! beside reference figures measured in the same run. `tests/bench/run.sh` builds
//! in release mode and calls it; `docs/performance.md` explains the figures.

// The table is this program's output.
#![allow(clippy::print_stdout, clippy::print_stderr)]
// Rates and quantiles are shown rounded: precision loss in the casts is irrelevant.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod load;
mod raw_http;
mod report;
mod scenarios;
mod seed;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use dge_proto::v1::client_registry_client::ClientRegistryClient;
use dge_proto::v1::{AddClientRequest, ClientSettings};
use dge_store::Db;
use tonic::transport::Channel;

use crate::load::Stats;
use crate::report::{Reference, Row};
use crate::scenarios::Target;
use crate::server::{Idp, IdpOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// The embedded default: SQLite, state in the process.
    Sqlite,
    /// PostgreSQL and Redis on loopback, in a throw-away database.
    Postgres,
}

/// Benchmark of DGE Identity against reference figures.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The `dge-idp` binary to start.
    #[arg(long)]
    idp_bin: PathBuf,
    #[arg(long, value_enum, default_value_t = BackendArg::Sqlite)]
    backend: BackendArg,
    /// Seeded active accounts the logins pick from.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    accounts: u64,
    /// Seconds of load per scenario.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Concurrent connections (the targets are set at 64).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Threads of the load generator (default: half the cores, at least one).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    load_threads: Option<u16>,
    /// The server's `--worker-threads` (default: the cores the load generator
    /// leaves, at least one). With as many as the cores, the server's threads and
    /// the load generator's take turns on them and the gRPC calls' p99 is 1.5 to 1.7
    /// times longer (docs/performance.md, runs 20 to 24).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    server_workers: Option<u16>,
    /// Password logins are also run at this many times the concurrency.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=20))]
    overload_factor: u64,
    /// An existing PostgreSQL database to connect to, to create the throw-away one.
    #[arg(
        long,
        env = "DGE_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    #[arg(
        long,
        env = "DGE_BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Node.js, for the `oidc-provider` reference.
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// The reference server script.
    #[arg(long, default_value = "tests/bench/oidc-provider-ref.mjs")]
    reference_script: PathBuf,
    /// Keep the server's data directory (logs, SQLite file) instead of removing it.
    #[arg(long)]
    keep: bool,
    /// The server's log filter (`RUST_LOG`), written to `dge-idp.log` in its data
    /// directory (see `--keep`). `warn,sqlx::query=trace` lists every SQL statement,
    /// to count a path's round trips. A verbose filter slows the server: its figures
    /// then mean nothing.
    #[arg(long, default_value = "warn")]
    idp_log: String,
    /// Run only this scenario, with the reference it is compared with (repeat for
    /// several): to profile one path. All of them by default.
    #[arg(long, value_parser = SCENARIOS)]
    only: Vec<String>,
}

/// The scenarios `--only` accepts.
const SCENARIOS: [&str; 10] = [
    "grpc_check",
    "grpc_introspect",
    "introspect_http",
    "client_credentials",
    "jwks",
    "discovery",
    "password_login",
    "password_login_overload",
    "signup",
    "grpc_empty",
];

impl Args {
    fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }

    /// The load generator's threads and the server's, as given or by default.
    fn threads(&self) -> (usize, usize) {
        split_cores(
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            self.load_threads.map(usize::from),
            self.server_workers.map(usize::from),
        )
    }
}

/// Shares `cores` between the load generator (half, at least one) and the server
/// (the rest, at least one) unless told otherwise: on the same machine, both at
/// one thread per core oversubscribe it.
fn split_cores(cores: usize, load: Option<usize>, server: Option<usize>) -> (usize, usize) {
    let load = load.unwrap_or((cores / 2).max(1));
    let server = server.unwrap_or(cores.saturating_sub(load).max(1));
    (load, server)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (load_threads, _) = args.threads();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(load_threads)
        .enable_all()
        .build()?;
    let ok = runtime.block_on(run(args))?;
    if ok {
        Ok(())
    } else {
        bail!("some scenarios failed (see the errors above)")
    }
}

/// Runs everything, and cleans up whatever happened. `Ok(false)`: a scenario had
/// unexpected errors or no success.
async fn run(args: Args) -> anyhow::Result<bool> {
    let tag = std::process::id().to_string();
    let work_dir = std::env::temp_dir().join(format!("dge-bench-{tag}"));
    let pg_name = format!("dge_bench_{tag}");
    let database_url = match args.backend {
        BackendArg::Sqlite => None,
        BackendArg::Postgres => Some(create_database(&args.postgres_url, &pg_name).await?),
    };
    let outcome = measure(&args, &work_dir, database_url.clone(), &tag).await;
    if database_url.is_some()
        && let Err(e) = drop_database(&args.postgres_url, &pg_name).await
    {
        eprintln!("could not drop the database {pg_name}: {e:#}");
    }
    if args.keep {
        eprintln!("kept {}", work_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    outcome
}

/// `postgres://…/<db>` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (head, query) = url
        .split_once('?')
        .map_or((url, None), |(h, q)| (h, Some(q)));
    let (server, _) = head
        .rsplit_once('/')
        .filter(|(s, _)| s.contains("://"))
        .context("the PostgreSQL URL names no database")?;
    Ok(match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    })
}

async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let admin = Db::connect(admin_url, 1)
        .await
        .with_context(|| "connecting to PostgreSQL (is it running on 127.0.0.1:5432?)")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await?;
    admin.pool().close().await;
    with_database(admin_url, name)
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let admin = Db::connect(admin_url, 1).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin.pool())
        .await?;
    admin.pool().close().await;
    Ok(())
}

async fn measure(
    args: &Args,
    work_dir: &std::path::Path,
    database_url: Option<String>,
    tag: &str,
) -> anyhow::Result<bool> {
    let idp = Idp::start(IdpOptions {
        bin: &args.idp_bin,
        data_dir: work_dir.join("idp"),
        database_url: database_url.clone(),
        redis_url: database_url.as_ref().map(|_| args.redis_url.clone()),
        redis_prefix: format!("dge-bench-{tag}:"),
        log_filter: args.idp_log.clone(),
        worker_threads: args.threads().1,
    })
    .await?;
    eprintln!("dge-idp runs as pid {}", idp.pid);
    let reference = match server::Reference::start(
        &args.node,
        &args.reference_script,
        "bench-service",
        "bench-reference-secret-0123456789",
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            idp.stop().await;
            return Err(e);
        }
    };
    let result = scenarios_on(args, &idp, &reference, database_url, tag).await;
    let (idle_after_kib, _) = idp.memory_kib().unwrap_or_default();
    idp.stop().await;
    reference.stop().await;
    let mut report = result?;
    report.idle_after_kib = idle_after_kib;
    report.print();
    Ok(report.all_ok())
}

async fn scenarios_on(
    args: &Args,
    idp: &Idp,
    reference: &server::Reference,
    database_url: Option<String>,
    tag: &str,
) -> anyhow::Result<report::Report> {
    let started_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_kib, _) = idp.memory_kib()?;
    let seed_url = database_url.unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            idp.data_dir.join("dge-identity.sqlite3").display()
        )
    });
    eprintln!("seeding {} accounts…", args.accounts);
    let seeded_in = seed::accounts(&seed_url, args.accounts).await?;
    eprintln!("seeded in {:.1} s", seeded_in.as_secs_f64());

    let concurrency = usize::try_from(args.concurrency)?;
    let duration = Duration::from_secs_f64(args.duration);
    let http = scenarios::http_client()?;
    let admin_token = std::fs::read_to_string(idp.data_dir.join("admin.token"))
        .context("reading the bootstrap admin token")?;
    let admin_bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", admin_token.trim()).parse()?;
    let mut channels = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        channels.push(Channel::from_shared(idp.grpc.clone())?.connect().await?);
    }
    let mut add = tonic::Request::new(AddClientRequest {
        id: "bench-service".into(),
        name: "Benchmark service".into(),
        redirect_uris: vec!["http://localhost:8083/callback".into()],
        confidential: true,
        first_party: true,
        post_logout_redirect_uris: vec![],
        settings: Some(ClientSettings {
            service_scopes: vec!["authz:check".into(), "authz:introspect".into()],
            ..ClientSettings::default()
        }),
    });
    add.metadata_mut().insert("authorization", admin_bearer);
    let service_secret = ClientRegistryClient::new(channels[0].clone())
        .add_client(add)
        .await
        .context("registering the benchmark's service client")?
        .into_inner()
        .client_secret;
    let service_token = service_token(&http, &idp.http, &service_secret).await?;
    // Check and introspection see only the tokens of the caller's own client: the
    // person logs in through the service's client, as a module's users do.
    let service_rp = scenarios::Rp {
        id: "bench-service",
        secret: &service_secret,
        redirect_uri: "http://localhost:8083/callback",
    };
    let user_token = scenarios::login_through(&http, &idp.http, &service_rp, &seed::login(1))
        .await
        .map_err(|o| anyhow::anyhow!("logging the first seeded account in: {o:?}"))?;
    let target = Arc::new(Target {
        http: http.clone(),
        base: idp.http.clone(),
        channels,
        service_bearer: format!("Bearer {service_token}").parse()?,
        user_token,
        service_id: "bench-service".into(),
        service_secret,
        accounts: args.accounts,
        signups: AtomicU64::new(0),
        run_tag: tag.to_owned(),
    });

    let mut rows = Vec::new();
    let ours = |name: &str, stats: Stats, peak: u64, reference: Option<Reference>| Row {
        name: name.to_owned(),
        stats,
        peak_kib: Some(peak),
        reference,
    };
    let ref_peak = |pid: u32| server::memory_kib(pid).map(|(_, p)| p).ok();

    // gRPC: the empty call first, it is the ceiling of the next two.
    if ["grpc_empty", "grpc_check", "grpc_introspect"]
        .iter()
        .any(|s| args.runs(s))
    {
        let empty = run_on(idp, concurrency, duration, scenarios::grpc_empty(&target)).await?;
        let empty_rate = empty.0.rate();
        rows.push(ours("grpc_empty (health)", empty.0, empty.1, None));
        for (name, scenario) in [
            ("grpc_check", scenarios::grpc_check(&target)),
            ("grpc_introspect", scenarios::grpc_introspect(&target)),
        ] {
            if !args.runs(name) {
                continue;
            }
            let (stats, peak) = run_on(idp, concurrency, duration, scenario).await?;
            let reference = Reference::new("grpc_empty", empty_rate);
            rows.push(ours(name, stats, peak, Some(reference)));
        }
    }
    if args.runs("introspect_http") {
        let (stats, peak) = run_on(
            idp,
            concurrency,
            duration,
            scenarios::introspect_http(&target, concurrency)?,
        )
        .await?;
        rows.push(ours("introspect_http", stats, peak, None));
    }

    // HTTP scenarios with an oidc-provider reference.
    let pairs = [
        (
            "client_credentials",
            scenarios::client_credentials(
                &format!("{}/token", idp.http),
                &target.service_id,
                &target.service_secret,
                concurrency,
            )?,
            scenarios::client_credentials(
                &format!("{}/token", reference.url),
                "bench-service",
                "bench-reference-secret-0123456789",
                concurrency,
            )?,
        ),
        (
            "jwks",
            scenarios::get(&format!("{}/jwks", idp.http), concurrency)?,
            scenarios::get(&format!("{}/jwks", reference.url), concurrency)?,
        ),
        (
            "discovery",
            scenarios::get(
                &format!("{}/.well-known/openid-configuration", idp.http),
                concurrency,
            )?,
            scenarios::get(
                &format!("{}/.well-known/openid-configuration", reference.url),
                concurrency,
            )?,
        ),
    ];
    for (name, mine, theirs) in pairs {
        if !args.runs(name) {
            continue;
        }
        let _ = std::fs::write(format!("/proc/{}/clear_refs", reference.pid), "5");
        let theirs = load::run(concurrency, duration, theirs).await;
        let theirs_rate = theirs.rate();
        rows.push(Row {
            name: format!("ref: oidc-provider {name}"),
            stats: theirs,
            peak_kib: ref_peak(reference.pid),
            reference: None,
        });
        let (stats, peak) = run_on(idp, concurrency, duration, mine).await?;
        rows.push(ours(
            name,
            stats,
            peak,
            Some(Reference::new("oidc-provider", theirs_rate)),
        ));
    }

    // Password logins against the argon2id ceiling.
    let hashing = ["password_login", "password_login_overload", "signup"];
    if hashing.iter().any(|s| args.runs(s)) {
        // Two ways to hash alone: the argon2 crate's verifier, which takes fresh
        // memory for each hash, and the server's routine, which reuses it. Which is
        // faster depends on the machine; the ceiling is the faster.
        let stock = argon2_ceiling(duration, false).await?;
        let reused = argon2_ceiling(duration, true).await?;
        let ceiling_rate = stock.rate().max(reused.rate());
        rows.push(Row {
            name: "ref: argon2id verify, all cores".into(),
            stats: stock,
            peak_kib: None,
            reference: None,
        });
        rows.push(Row {
            name: "ref: argon2id verify, all cores, memory reused".into(),
            stats: reused,
            peak_kib: None,
            reference: None,
        });
        let overload = concurrency * usize::try_from(args.overload_factor)?;
        let runs = [
            ("password_login", concurrency, "password_login".to_owned()),
            (
                "password_login_overload",
                overload,
                format!("password_login x{}", args.overload_factor),
            ),
        ];
        for (scenario, connections, name) in runs {
            if !args.runs(scenario) {
                continue;
            }
            let login = scenarios::password_login(&target);
            let (stats, peak) = run_on(idp, connections, duration, login).await?;
            let reference = Reference::new("argon2id", ceiling_rate);
            rows.push(ours(&name, stats, peak, Some(reference)));
        }
        if args.runs("signup") {
            let signup = scenarios::signup(&target);
            let (stats, peak) = run_on(idp, concurrency, duration, signup).await?;
            let reference = Reference::new("argon2id", ceiling_rate);
            rows.push(ours("signup", stats, peak, Some(reference)));
        }
    }

    // Let the server settle before reading its idle memory again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(report::Report {
        backend: format!("{:?}", args.backend).to_lowercase(),
        threads: args.threads(),
        accounts: args.accounts,
        concurrency,
        duration,
        start_to_ready: idp.start_to_ready,
        idle_kib,
        idle_after_kib: 0,
        seeded_in,
        total: started_at.elapsed(),
        rows,
    })
}

/// Runs one scenario against the server and reads its peak memory during it.
async fn run_on(
    idp: &Idp,
    concurrency: usize,
    duration: Duration,
    scenario: scenarios::Scenario,
) -> anyhow::Result<(Stats, u64)> {
    idp.reset_peak()?;
    let stats = load::run(concurrency, duration, scenario).await;
    let (_, peak) = idp.memory_kib()?;
    Ok((stats, peak))
}

async fn service_token(http: &reqwest::Client, base: &str, secret: &str) -> anyhow::Result<String> {
    let answer: serde_json::Value = http
        .post(format!("{base}/token"))
        .basic_auth("bench-service", Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "authz:check authz:introspect"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token for the service client")
}

/// argon2id verifications per second on every core, with our parameters: what a
/// password login cannot exceed. Runs in this process while the server is idle;
/// with `reuse`, each thread hashes in the same memory every time, as the server's
/// hashing threads do (`dge_registry::hashing::matches`).
async fn argon2_ceiling(duration: Duration, reuse: bool) -> anyhow::Result<Stats> {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    let phc = dge_registry::Hasher::new(
        dge_registry::hashing::HashParams::default(),
        1,
        Duration::from_secs(60),
    )
    .hash(seed::PASSWORD.to_owned())
    .await?;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let phc = phc.clone();
            std::thread::spawn(move || {
                let mut micros = Vec::new();
                let mut failures = 0_u64;
                let mut blocks = Vec::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let ok = if reuse {
                        dge_registry::hashing::matches(seed::PASSWORD.as_bytes(), &phc, &mut blocks)
                    } else {
                        PasswordHash::new(&phc).is_ok_and(|h| {
                            argon2::Argon2::default()
                                .verify_password(seed::PASSWORD.as_bytes(), &h)
                                .is_ok()
                        })
                    };
                    if ok {
                        micros.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                    } else {
                        failures += 1;
                    }
                }
                (micros, failures)
            })
        })
        .collect();
    let mut stats = Stats {
        concurrency: threads,
        ..Stats::default()
    };
    for worker in workers {
        let (micros, failures) = worker
            .join()
            .map_err(|_| anyhow::anyhow!("an argon2 thread panicked"))?;
        stats.ok += micros.len() as u64;
        stats.errors += failures;
        stats.ok_micros.extend(micros);
    }
    stats.elapsed = started.elapsed();
    stats.ok_micros.sort_unstable();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_the_cores_between_load_and_server() {
        assert_eq!(split_cores(2, None, None), (1, 1));
        assert_eq!(split_cores(1, None, None), (1, 1));
        assert_eq!(split_cores(8, None, None), (4, 4));
        assert_eq!(split_cores(2, None, Some(2)), (1, 2));
        assert_eq!(split_cores(4, Some(3), None), (3, 1));
        assert_eq!(split_cores(2, Some(4), None), (4, 1));
    }

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "b").ok(),
            Some("postgres://postgres@127.0.0.1:5432/b".to_owned())
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "b").ok(),
            Some("postgres://u@h/b?sslmode=disable".to_owned())
        );
        assert!(with_database("postgres:nothing", "b").is_err());
    }
}
