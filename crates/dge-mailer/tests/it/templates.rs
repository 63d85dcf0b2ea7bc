//! Every template speaks of the portal as configured, never of a hard-coded one.

use dge_mailer::{MailSettings, Outbox, templates};
use dge_store::Db;
use sqlx::Row;

use crate::support::{Engine, enqueue, fresh_url};

#[tokio::test]
async fn every_template_names_the_configured_portal_and_addresses() {
    let (url, _database) = fresh_url(Engine::Sqlite).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = Outbox::new(MailSettings {
        portal_name: "Portail Ouvert".into(),
        home_url: "https://portail.example.org/accueil".into(),
        support_email: "aide@portail.example.org".into(),
        from: "Portail Ouvert <ne-pas-repondre@portail.example.org>".into(),
    });
    for kind in templates::kinds() {
        enqueue(&db, &outbox, kind, "zoe@nancy.fr", "Zoé").await;
    }
    let rows = sqlx::query("SELECT kind, subject, body_text, body_html FROM outbox")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), templates::kinds().count());
    for r in rows {
        let kind: String = r.get("kind");
        for part in ["subject", "body_text", "body_html"] {
            let text: String = r.get(part);
            assert!(text.contains("Portail Ouvert"), "{kind} {part}: {text}");
            assert!(
                !text.to_lowercase().contains("datagrandest"),
                "{kind} {part} names another portal: {text}"
            );
        }
        let text: String = r.get("body_text");
        let html: String = r.get("body_html");
        assert!(
            text.contains("https://portail.example.org/accueil"),
            "{kind}"
        );
        assert!(text.contains("aide@portail.example.org"), "{kind}");
        assert!(html.contains("mailto:aide@portail.example.org"), "{kind}");
    }
}
