//! Every template speaks of the portal as configured, never of a hard-coded one.

use dge_mailer::{MailSettings, Outbox, templates};
use dge_store::Db;
use sqlx::Row;

use crate::support::{Engine, enqueue, fresh_url};

/// An outbox for a portal that is not DataGrandEst.
fn portal_outbox() -> Outbox {
    Outbox::new(MailSettings {
        portal_name: "Portail Ouvert".into(),
        home_url: "https://portail.example.org/accueil".into(),
        support_email: "aide@portail.example.org".into(),
        from: "Portail Ouvert <ne-pas-repondre@portail.example.org>".into(),
    })
}

#[tokio::test]
async fn every_template_names_the_configured_portal_and_addresses() {
    let (url, _database) = fresh_url(Engine::Sqlite).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = portal_outbox();
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

#[tokio::test]
async fn suspension_emails_name_the_portal_once_and_the_reactivation_ends_with_the_login_link() {
    let (url, _database) = fresh_url(Engine::Sqlite).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = portal_outbox();
    for kind in ["account_suspended", "account_reactivated"] {
        enqueue(&db, &outbox, kind, "zoe@nancy.fr", "Zoé").await;
        let text: String = sqlx::query("SELECT body_text FROM outbox WHERE kind = $1")
            .bind(kind)
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get("body_text");
        assert!(
            !text.contains("votre compte Portail Ouvert"),
            "{kind}: the portal named twice in a sentence: {text}"
        );
        assert_eq!(
            text.to_lowercase()
                .matches("l'équipe portail ouvert")
                .count(),
            2,
            "{kind}: once in the text, once in the signature: {text}"
        );
        assert_eq!(text.matches("Portail Ouvert").count(), 3, "{kind}: {text}");
    }
    let text: String =
        sqlx::query("SELECT body_text FROM outbox WHERE kind = 'account_reactivated'")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get("body_text");
    assert!(
        text.contains("Pour vous connecter : https://idp.example.org/login"),
        "{text}"
    );
    assert!(text.contains("connectez-vous de nouveau"), "{text}");
}

/// Text typed by a person or an administrator keeps its line breaks in the HTML part,
/// each line escaped.
#[tokio::test]
async fn typed_text_keeps_its_lines_in_html() {
    let (url, _database) = fresh_url(Engine::Sqlite).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = portal_outbox();
    enqueue(&db, &outbox, "account_rejected", "zoe@nancy.fr", "Zoé").await;
    let html: String = sqlx::query_scalar("SELECT body_html FROM outbox")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(
        html.contains("Organisme inconnu.<br>Écrivez-nous &lt;svp&gt;."),
        "{html}"
    );
}
