//! Runs the dgectl binary against a stand-in server on 127.0.0.1 and checks
//! what an administrator would see: output, messages and exit statuses.

mod fake_server;

use std::process::Stdio;
use std::sync::atomic::Ordering;

use fake_server::{ADMIN_TOKEN, CLIENT_SECRET, GOOD_ACCESS_TOKEN};

/// What one run of dgectl produced.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs dgectl with `args`, standard input closed, none of the caller's
/// `DGECTL_*` variables, and a configuration folder without a saved login.
async fn dgectl(args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dgectl"))
        .args(args)
        .env_remove("DGECTL_SERVER")
        .env_remove("DGECTL_TOKEN")
        .env_remove("DGECTL_TOKEN_FILE")
        .env(
            "XDG_CONFIG_HOME",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/no-saved-login"),
        )
        .stdin(Stdio::null())
        .output()
        .await
        .expect("dgectl runs");
    let run = Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    };
    assert!(
        !run.stdout.contains(ADMIN_TOKEN) && !run.stderr.contains(ADMIN_TOKEN),
        "the token was printed"
    );
    run
}

/// Runs dgectl against `addr` with the administrator token.
async fn admin(addr: std::net::SocketAddr, args: &[&str]) -> Run {
    let server = format!("http://{addr}");
    let mut all = vec!["--server", server.as_str(), "--token", ADMIN_TOKEN];
    all.extend_from_slice(args);
    dgectl(&all).await
}

#[tokio::test]
async fn accounts_list_prints_the_contract_columns() {
    let (addr, _) = fake_server::start().await;
    let run = admin(addr, &["accounts", "list"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut lines = run.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "LOGIN",
            "NAME",
            "EMAIL",
            "ORGANISATION",
            "STATUS",
            "CREATED",
            "DESCRIPTION"
        ]
    );
    let alice = lines.next().expect("alice");
    assert!(alice.starts_with("alice "), "{alice}");
    assert!(alice.contains("pending") && alice.contains("2023-11-14 22:13"));
    assert!(alice.ends_with('…'), "description is cut: {alice}");
    assert!(lines.next().expect("bob").starts_with("bob "));
}

#[tokio::test]
async fn accounts_list_filters_by_status_and_prints_json() {
    let (addr, _) = fake_server::start().await;
    let run = admin(
        addr,
        &["accounts", "list", "--status", "active", "-o", "json"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let accounts = value["accounts"].as_array().expect("array");
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["login"], "bob");
    assert_eq!(accounts[0]["status"], "active");
    assert_eq!(accounts[0]["kind"], "local");
}

#[tokio::test]
async fn a_refused_token_exits_4() {
    let (addr, _) = fake_server::start().await;
    let server = format!("http://{addr}");
    let run = dgectl(&[
        "--server",
        &server,
        "--token",
        "wrong-token",
        "orgs",
        "list",
    ])
    .await;
    assert_eq!(run.code, 4);
    assert_eq!(
        run.stderr.trim(),
        "error: the server refused the token given by --token (check it, or run dgectl login)"
    );
    assert!(!run.stderr.contains("wrong-token"));
}

#[tokio::test]
async fn the_token_file_is_read_and_trimmed() {
    let (addr, _) = fake_server::start().await;
    let dir = std::env::temp_dir().join(format!("dgectl-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("token");
    std::fs::write(&file, format!("  {ADMIN_TOKEN}\n")).expect("write token");
    let server = format!("http://{addr}");
    let path = file.to_str().expect("UTF-8 path");
    let run = dgectl(&["--server", &server, "--token-file", path, "orgs", "list"]).await;
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("region-grand-est"));
}

#[tokio::test]
async fn field_violations_are_listed_one_per_line() {
    let (addr, _) = fake_server::start().await;
    let args = ["accounts", "reject", "carol", "--reason", "non", "--yes"];
    let run = admin(addr, &args).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim_end(),
        "error: invalid_argument: the rejection is not valid\n  \
         reason: must be at least 10 characters\n  \
         account: no pending account with this login"
    );
}

#[tokio::test]
async fn reject_with_yes_prints_the_rejected_account() {
    let (addr, fake) = fake_server::start().await;
    let args = [
        "accounts",
        "reject",
        "alice",
        "--reason",
        "organisation inconnue",
        "-y",
    ];
    let run = admin(addr, &args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("account alice rejected\n"));
    assert!(
        run.stdout
            .contains("REJECTION REASON  organisation inconnue")
    );
    assert_eq!(fake.rejections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn destructive_commands_without_a_terminal_need_yes() {
    let (addr, fake) = fake_server::start().await;
    let run = admin(
        addr,
        &["accounts", "reject", "alice", "--reason", "doublon"],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("add --yes"), "{}", run.stderr);

    let run = admin(addr, &["rights", "revoke", "alice", "datahub:publish"]).await;
    assert_eq!(run.code, 2);
    assert_eq!(fake.rejections.load(Ordering::SeqCst), 0);
    assert_eq!(fake.revocations.load(Ordering::SeqCst), 0);

    let run = admin(
        addr,
        &["rights", "revoke", "alice", "datahub:publish", "--yes"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "revoked datahub:publish from alice");
}

#[tokio::test]
async fn an_unknown_account_shows_code_and_message() {
    let (addr, _) = fake_server::start().await;
    let run = admin(addr, &["accounts", "show", "nobody"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.trim(), "error: not_found: account not found");
}

#[tokio::test]
async fn a_confidential_client_secret_is_shown_once() {
    let (addr, _) = fake_server::start().await;
    let args = [
        "clients",
        "add",
        "geo",
        "--redirect-uri",
        "http://localhost:8083/cb",
    ];
    let run = admin(addr, &args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("client id:     geo"));
    assert!(
        run.stdout
            .contains(&format!("client secret: {CLIENT_SECRET}"))
    );
    assert!(run.stdout.contains("shown only once"));

    let args = [
        "clients",
        "add",
        "pub",
        "--redirect-uri",
        "http://localhost:8083/cb",
        "--public",
    ];
    let run = admin(addr, &args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("client secret"));
}

#[tokio::test]
async fn a_rotated_secret_is_shown_once() {
    let (addr, _) = fake_server::start().await;
    let run = admin(addr, &["clients", "rotate-secret", "geo"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("client id:     geo"));
    assert!(
        run.stdout
            .contains(&format!("client secret: {CLIENT_SECRET}"))
    );
    assert!(run.stdout.contains("shown only once"));
    assert!(run.stdout.contains("old secret is refused"));
}

#[tokio::test]
async fn removing_a_client_needs_yes_and_says_what_ends() {
    let (addr, _) = fake_server::start().await;
    let run = admin(addr, &["clients", "remove", "geo"]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("remove the client geo")
            && run.stderr.contains("access tokens are revoked")
            && run.stderr.contains("add --yes"),
        "{}",
        run.stderr
    );
    let run = admin(addr, &["clients", "remove", "geo", "--yes"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("client geo removed"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn updating_an_unknown_client_fails_with_not_found() {
    let (addr, _) = fake_server::start().await;
    let run = admin(
        addr,
        &["clients", "update", "nobody", "--first-party", "yes"],
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.starts_with("error: not_found"), "{}", run.stderr);
}

#[tokio::test]
async fn check_exits_0_when_allowed_and_1_when_denied() {
    let (addr, _) = fake_server::start().await;
    let run = admin(addr, &["check", GOOD_ACCESS_TOKEN, "datahub:publish"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.trim(),
        "allowed: datahub:publish (subject id-bob)"
    );

    let run = admin(addr, &["check", "expired", "datahub:publish"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout.trim(), "denied: datahub:publish: invalid_token");
}

#[tokio::test]
async fn an_unimplemented_service_is_a_failed_call() {
    let (addr, _) = fake_server::start().await;
    // The fake serves no Mailer.
    let run = admin(addr, &["mail", "list"]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("error: unimplemented"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn an_unreachable_server_exits_3() {
    let run = dgectl(&[
        "--server",
        "http://127.0.0.1:1",
        "--token",
        ADMIN_TOKEN,
        "orgs",
        "list",
    ])
    .await;
    assert_eq!(run.code, 3);
    assert!(
        run.stderr
            .starts_with("error: cannot reach the DGE Identity server at http://127.0.0.1:1"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let run = dgectl(&["accounts", "reject", "alice"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--reason"));

    let run = dgectl(&["accounts", "list", "--status", "asleep"]).await;
    assert_eq!(run.code, 2);
}

#[tokio::test]
async fn completion_needs_no_server_nor_token() {
    let run = dgectl(&["completion", "bash"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("dgectl"));
}

#[tokio::test]
async fn accounts_unlock_names_the_account_or_says_it_is_unknown() {
    let (addr, _) = fake_server::start().await;
    let run = admin(addr, &["accounts", "unlock", "bob"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("account bob unlocked\n"),
        "{}",
        run.stdout
    );
    let run = admin(addr, &["accounts", "unlock", "nobody"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.trim(), "error: not_found: account not found");
}

/// A self-signed certificate for the loopback address, written where dgectl can read
/// it; the folder goes when the value is dropped.
struct SelfSigned {
    dir: std::path::PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl SelfSigned {
    fn new() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("self-signed certificate");
        let dir = std::env::temp_dir().join(format!("dgectl-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let me = Self {
            dir,
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
        };
        std::fs::write(me.ca_path(), &me.cert_pem).expect("write CA file");
        me
    }

    fn ca_path(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }
}

impl Drop for SelfSigned {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.dir));
    }
}

#[tokio::test]
async fn an_https_server_is_reached_with_its_ca_and_refused_without() {
    let tls = SelfSigned::new();
    let (addr, _) = fake_server::start_tls(&tls.cert_pem, &tls.key_pem).await;
    let server = format!("https://{addr}");
    let ca = tls.ca_path();
    let ca = ca.to_str().expect("UTF-8 path");
    let base = ["--server", server.as_str(), "--token", ADMIN_TOKEN];

    let run = dgectl(&[&base[..], &["--ca-cert", ca, "accounts", "list"]].concat()).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("alice"), "{}", run.stdout);

    // Without the CA, the system roots do not vouch for a self-signed certificate.
    let run = dgectl(&[&base[..], &["accounts", "list"]].concat()).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("certificate") || run.stderr.contains("Certificate"),
        "{}",
        run.stderr
    );

    // --ca-cert with an http:// URL, or with a file that is no certificate: usage errors.
    let plain = format!("http://{addr}");
    let run = dgectl(&[
        "--server",
        &plain,
        "--token",
        ADMIN_TOKEN,
        "--ca-cert",
        ca,
        "accounts",
        "list",
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--ca-cert needs an https://"),
        "{}",
        run.stderr
    );

    let not_pem = tls.dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    let run = dgectl(&[&base[..], &["--ca-cert", not_pem, "accounts", "list"]].concat()).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no PEM certificate"), "{}", run.stderr);
}
