//! Delivery to a real SMTP server: aiosmtpd on loopback, started by each test.

use std::collections::HashMap;

use dge_core::clock::ManualClock;
use dge_mailer::{DispatchSettings, Outbox, SmtpOptions, Transport, templates};
use dge_store::Db;
use serde_json::Value;
use sqlx::Row;

use crate::support::{
    ENGINES, Engine, NOW, Sink, count_with_status, dispatcher, enqueue, free_port, fresh_url,
    mail_settings, make_certs, row, scratch,
};

fn smtp(url: &str) -> Transport {
    Transport::smtp(url, &SmtpOptions::default()).expect("smtp transport")
}

fn by_message_id(messages: &[Value]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for m in messages {
        *seen
            .entry(m["message_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    seen
}

/// A person's name typed with a line break and a header after it.
const HOSTILE_NAME: &str = "Zoé\r\nBcc: intrus@pirate.example";

#[tokio::test]
async fn every_template_reaches_a_real_smtp_server_and_reads_back() {
    let (url, _database) = fresh_url(Engine::Sqlite).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = Outbox::new(mail_settings());
    let mut queued = HashMap::new();
    for kind in templates::kinds() {
        let to = format!("{kind}@nancy.fr");
        let name = if kind.starts_with("admin_") {
            ""
        } else {
            HOSTILE_NAME
        };
        queued.insert(enqueue(&db, &outbox, kind, &to, name).await, kind);
    }
    let sink = Sink::start(free_port(), &[]);
    let clock = ManualClock::new(NOW);
    let d = dispatcher(
        &url,
        smtp(&format!("smtp://127.0.0.1:{}", sink.port)),
        &clock,
        DispatchSettings::default(),
    )
    .await;
    while d.run_once().await.unwrap() > 0 {}
    assert_eq!(count_with_status(&db, "sent").await, queued.len() as i64);

    let messages = sink.messages();
    assert_eq!(messages.len(), queued.len(), "one email per kind");
    for m in &messages {
        let message_id = m["message_id"].as_str().unwrap();
        let id = message_id
            .trim_start_matches('<')
            .trim_end_matches("@datagrandest.fr>");
        let kind = queued[id];
        let stored = sqlx::query("SELECT subject, recipient FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await
            .unwrap();
        let subject: String = stored.get("subject");
        let recipient: String = stored.get("recipient");
        let context = format!("{kind}: {m:#}");

        assert_eq!(m["rcpt_tos"], serde_json::json!([recipient]), "{context}");
        assert_eq!(m["subject"], subject.as_str(), "decoded subject, {context}");
        assert!(!subject.contains(['\r', '\n']), "{context}");
        assert!(subject.contains("DataGrandEst"), "{context}");
        assert_eq!(
            m["from"], "DataGrandEst <no-reply@datagrandest.fr>",
            "{context}"
        );
        assert_eq!(m["defects"], serde_json::json!([]), "{context}");
        assert_eq!(m["raw_is_ascii"], true, "non-ASCII is encoded, {context}");
        assert_eq!(m["content_type"], "multipart/alternative", "{context}");
        let headers: Vec<&str> = m["header_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert!(
            !headers.iter().any(|h| h.eq_ignore_ascii_case("bcc")),
            "no header injected: {context}"
        );
        assert!(headers.contains(&"Date"), "{context}");

        let text = m["text"].as_str().expect("a text part");
        let html = m["html"].as_str().expect("an HTML part");
        assert_eq!(m["text_charset"], "utf-8", "{context}");
        assert_eq!(m["html_charset"], "utf-8", "{context}");
        assert!(text.starts_with("Bonjour"), "{context}");
        assert!(text.contains("L'équipe DataGrandEst"), "{context}");
        assert!(text.contains("merci de ne pas y répondre"), "{context}");
        assert!(html.starts_with("<!doctype html>"), "{context}");
        assert!(html.contains(r#"<html lang="fr">"#), "{context}");
        assert!(html.contains("L'équipe DataGrandEst"), "{context}");
        assert!(html.contains("mailto:contact@datagrandest.fr"), "{context}");
        assert!(!html.contains("{{") && !html.contains("{%"), "{context}");
        assert!(!text.contains("{{") && !text.contains("{%"), "{context}");
        if matches!(kind, "admin_signup_notice" | "admin_signup_digest") {
            // Text people typed is escaped in HTML, kept as typed in text.
            assert!(
                html.contains("&lt;vélo&gt;") && !html.contains("<vélo>"),
                "{context}"
            );
            assert!(text.contains("<vélo>"), "{context}");
        }
    }
    let rejected = messages
        .iter()
        .find(|m| m["rcpt_tos"][0] == "account_rejected@nancy.fr")
        .unwrap();
    assert!(
        rejected["text"]
            .as_str()
            .unwrap()
            .contains("Motif : Organisme inconnu")
    );
    sink.stop();
}

async fn down_then_back_case(engine: Engine) {
    const MESSAGES: usize = 10;
    let (url, _database) = fresh_url(engine).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = Outbox::new(mail_settings());
    let mut ids = Vec::new();
    for n in 0..MESSAGES {
        let to = format!("personne{n}@nancy.fr");
        ids.push(enqueue(&db, &outbox, "confirm_email", &to, "Zoé").await);
    }
    let port = free_port();
    let clock = ManualClock::new(NOW);
    let settings = DispatchSettings {
        retry_base_secs: 5,
        ..DispatchSettings::default()
    };
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let transport = smtp(&format!("smtp://127.0.0.1:{port}"));
        replicas.push(dispatcher(&url, transport, &clock, settings.clone()).await);
    }

    // The server is down: two rounds of failures.
    for wait in [0, 5] {
        clock.advance(wait);
        for d in &replicas {
            d.run_once().await.unwrap();
        }
    }
    for id in &ids {
        let r = row(&db, id).await;
        assert_eq!((r.status.as_str(), r.attempts), ("queued", 2), "{r:?}");
    }

    // Back up: the replicas race for the queue.
    let sink = Sink::start(port, &[]);
    clock.advance(10);
    let mut tasks = Vec::new();
    for d in replicas {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            while count_with_status(&db, "queued").await > 0 {
                d.run_once().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = by_message_id(&sink.messages());
    assert_eq!(seen.len(), MESSAGES, "none lost ({engine:?})");
    for id in &ids {
        assert_eq!(
            seen.get(&format!("<{id}@datagrandest.fr>")),
            Some(&1),
            "delivered exactly once ({engine:?})"
        );
        let r = row(&db, id).await;
        assert_eq!((r.status.as_str(), r.attempts), ("sent", 3));
    }
    sink.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn smtp_down_then_back_delivers_every_email_exactly_once() {
    for engine in ENGINES {
        down_then_back_case(engine).await;
    }
}

#[tokio::test]
async fn a_permanently_refused_recipient_is_marked_failed_with_the_servers_reason() {
    for engine in ENGINES {
        let (url, _database) = fresh_url(engine).await;
        let db = Db::connect(&url, 2).await.unwrap();
        let outbox = Outbox::new(mail_settings());
        let refused = enqueue(&db, &outbox, "confirm_email", "inconnu@nancy.fr", "Zoé").await;
        let accepted = enqueue(&db, &outbox, "confirm_email", "zoe@nancy.fr", "Zoé").await;
        let sink = Sink::start(free_port(), &["--refuse", "inconnu@nancy.fr"]);
        let clock = ManualClock::new(NOW);
        let d = dispatcher(
            &url,
            smtp(&format!("smtp://127.0.0.1:{}", sink.port)),
            &clock,
            DispatchSettings::default(),
        )
        .await;
        while d.run_once().await.unwrap() > 0 {}

        let r = row(&db, &refused).await;
        assert_eq!(
            (r.status.as_str(), r.attempts),
            ("failed", 1),
            "no retry on 5xx"
        );
        assert!(r.last_error.contains("550"), "{r:?}");
        assert!(
            r.last_error.contains("Recipient address rejected"),
            "the server's own words: {r:?}"
        );
        assert_eq!(row(&db, &accepted).await.status, "sent");
        assert_eq!(sink.messages().len(), 1);
        sink.stop();
    }
}

#[tokio::test]
async fn an_accented_address_a_server_without_smtputf8_cannot_take_fails_at_once() {
    // Sign-up refuses such addresses, but an upstream provider may hand one over.
    for engine in ENGINES {
        let (url, _database) = fresh_url(engine).await;
        let db = Db::connect(&url, 2).await.unwrap();
        let outbox = Outbox::new(mail_settings());
        let accented = enqueue(
            &db,
            &outbox,
            "federated_link_added",
            "élise@nancy.fr",
            "Élise",
        )
        .await;
        let plain = enqueue(
            &db,
            &outbox,
            "federated_link_added",
            "elise@nancy.fr",
            "Élise",
        )
        .await;
        let sink = Sink::start(free_port(), &["--no-smtputf8"]);
        let clock = ManualClock::new(NOW);
        let d = dispatcher(
            &url,
            smtp(&format!("smtp://127.0.0.1:{}", sink.port)),
            &clock,
            DispatchSettings::default(),
        )
        .await;
        while d.run_once().await.unwrap() > 0 {}

        let r = row(&db, &accented).await;
        assert_eq!(
            (r.status.as_str(), r.attempts),
            ("failed", 1),
            "no retry for a refusal that cannot change: {r:?}"
        );
        assert!(r.last_error.contains("SMTPUTF8"), "{r:?}");
        assert_eq!(row(&db, &plain).await.status, "sent");
        assert_eq!(sink.messages().len(), 1);
        sink.stop();

        // A server that offers SMTPUTF8 takes it.
        let again = enqueue(
            &db,
            &outbox,
            "federated_link_added",
            "élise@nancy.fr",
            "Élise",
        )
        .await;
        let sink = Sink::start(free_port(), &[]);
        let d = dispatcher(
            &url,
            smtp(&format!("smtp://127.0.0.1:{}", sink.port)),
            &clock,
            DispatchSettings::default(),
        )
        .await;
        while d.run_once().await.unwrap() > 0 {}
        assert_eq!(row(&db, &again).await.status, "sent");
        assert_eq!(
            sink.messages()[0]["rcpt_tos"],
            serde_json::json!(["élise@nancy.fr"])
        );
        sink.stop();
    }
}

#[tokio::test]
async fn starttls_with_authentication_and_implicit_tls_deliver() {
    let certs = scratch();
    make_certs(&certs);
    let with_ca = SmtpOptions {
        ca_file: Some(certs.join("ca.pem")),
        ..SmtpOptions::default()
    };
    let cert = certs.join("server.pem");
    let key = certs.join("server.key");
    let tls_args = |mode: &'static str| {
        vec![
            "--tls".to_owned(),
            mode.to_owned(),
            "--cert".to_owned(),
            cert.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
        ]
    };
    let (url, _database) = fresh_url(Engine::Sqlite).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = Outbox::new(mail_settings());
    let clock = ManualClock::new(NOW);

    // STARTTLS required by the server, then AUTH; the password needs %-escapes.
    let mut args = tls_args("starttls");
    args.extend(["--auth".to_owned(), "dge:s3cret pw".to_owned()]);
    let sink = Sink::start(
        free_port(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let good = format!(
        "smtp://dge:s3cret%20pw@127.0.0.1:{}?tls=required",
        sink.port
    );
    let bad = format!("smtp://dge:wrong@127.0.0.1:{}?tls=required", sink.port);

    let refused = enqueue(&db, &outbox, "account_pending", "zoe@nancy.fr", "Zoé").await;
    let d = dispatcher(
        &url,
        Transport::smtp(&bad, &with_ca).unwrap(),
        &clock,
        DispatchSettings::default(),
    )
    .await;
    assert_eq!(d.run_once().await.unwrap(), 1);
    let r = row(&db, &refused).await;
    assert_eq!(
        r.status, "queued",
        "bad credentials are retried once fixed: {r:?}"
    );
    assert!(r.last_error.contains("535"), "{r:?}");

    let untrusted = Transport::smtp(&good, &SmtpOptions::default()).unwrap();
    clock.advance(30);
    let d = dispatcher(&url, untrusted, &clock, DispatchSettings::default()).await;
    assert_eq!(d.run_once().await.unwrap(), 1);
    assert_eq!(
        row(&db, &refused).await.status,
        "queued",
        "an unknown CA is refused"
    );
    assert!(sink.messages().is_empty());

    clock.advance(60);
    let d = dispatcher(
        &url,
        Transport::smtp(&good, &with_ca).unwrap(),
        &clock,
        DispatchSettings::default(),
    )
    .await;
    assert_eq!(d.run_once().await.unwrap(), 1);
    assert_eq!(row(&db, &refused).await.status, "sent");
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["tls"], true);
    assert_eq!(got[0]["auth_user"], "dge");
    sink.stop();

    // Implicit TLS (smtps://).
    let sink = Sink::start(
        free_port(),
        &tls_args("implicit")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let id = enqueue(&db, &outbox, "account_activated", "zoe@nancy.fr", "Zoé").await;
    let transport = Transport::smtp(&format!("smtps://127.0.0.1:{}", sink.port), &with_ca).unwrap();
    let d = dispatcher(&url, transport, &clock, DispatchSettings::default()).await;
    assert_eq!(d.run_once().await.unwrap(), 1);
    assert_eq!(row(&db, &id).await.status, "sent");
    let got = sink.messages();
    assert_eq!((got.len(), &got[0]["tls"]), (1, &Value::Bool(true)));
    sink.stop();
}
