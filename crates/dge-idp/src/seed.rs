//! First-start data of the embedded default: demo clients, organisations, modules
//! and rights, and the bootstrap administrator's API token. Every insert is
//! idempotent, so a second start changes nothing.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use dge_oidc::clients::{self, AddError, NewClient};
use dge_store::Db;

/// Demo organisations: `(id, name, siret, trusted, email domains)`. The SIRETs are
/// demo values with valid checksums, not the bodies' real numbers.
const ORGANISATIONS: &[(&str, &str, &str, bool, &str)] = &[
    (
        "region-grand-est",
        "Région Grand Est",
        "20005226700016",
        true,
        "grandest.fr",
    ),
    (
        "eurometropole-strasbourg",
        "Eurométropole de Strasbourg",
        "24670048800017",
        true,
        "strasbourg.eu",
    ),
    (
        "ville-de-nancy",
        "Ville de Nancy",
        "21540395700016",
        false,
        "nancy.fr",
    ),
    (
        "atmo-grand-est",
        "ATMO Grand Est",
        "82064707200017",
        false,
        "atmo-grandest.eu",
    ),
];

/// A module: `(name, label, [(right, label)])`.
type ModuleSeed = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Modules and their rights.
const MODULES: &[ModuleSeed] = &[
    (
        "datahub",
        "Catalogue de données DataHub",
        &[
            ("datahub:publish", "Publier des données"),
            ("datahub:dashboards", "Créer des tableaux de bord"),
        ],
    ),
    (
        "communautes",
        "Espace collaboratif DGE Communautés",
        &[
            ("communautes:member", "Accéder à l'espace collaboratif"),
            ("communautes:space:general", "Espace « Général »"),
        ],
    ),
];

/// Seeds organisations, modules and rights.
///
/// # Errors
/// Fails when the database fails.
pub async fn directory(db: &Db, now: i64) -> anyhow::Result<()> {
    for (id, name, siret, trusted, domains) in ORGANISATIONS {
        sqlx::query(
            "INSERT INTO organisations (id, name, name_key, siret, trusted, status, email_domains, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(*id)
        .bind(*name)
        .bind(name.to_lowercase())
        .bind(*siret)
        .bind(i64::from(*trusted))
        .bind(*domains)
        .bind(now)
        .execute(db.pool())
        .await?;
    }
    for (module, label, rights) in MODULES {
        sqlx::query("INSERT INTO modules (name, label, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(*module)
            .bind(*label)
            .bind(now)
            .execute(db.pool())
            .await?;
        for (right, right_label) in *rights {
            sqlx::query(
                "INSERT INTO rights (name, module, label, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            )
            .bind(*right)
            .bind(*module)
            .bind(*right_label)
            .bind(now)
            .execute(db.pool())
            .await?;
        }
    }
    Ok(())
}

/// Seeds the two demo portal clients. Their fixed secret is for the embedded
/// default only; it is stored hashed like any other.
///
/// # Errors
/// Fails when the database fails.
pub async fn demo_clients(db: &Db, now: i64) -> anyhow::Result<()> {
    let demo = [
        NewClient {
            id: "datahub".into(),
            name: "DataHub".into(),
            redirect_uris: vec![
                "http://localhost:8081/callback".into(),
                "http://127.0.0.1:8081/callback".into(),
            ],
            post_logout_redirect_uris: vec!["http://localhost:8081/".into()],
            confidential: true,
            first_party: true,
            secret: Some("datahub-dev-secret".into()),
        },
        NewClient {
            id: "communautes".into(),
            name: "DGE Communautés".into(),
            redirect_uris: vec!["http://localhost:8082/callback".into()],
            post_logout_redirect_uris: vec!["http://localhost:8082/".into()],
            confidential: false,
            first_party: true,
            secret: None,
        },
        // `dgectl login`: a public tool without a browser, device grant only.
        NewClient {
            id: "dgectl".into(),
            name: "dgectl (outil d'administration)".into(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            confidential: false,
            first_party: true,
            secret: None,
        },
    ];
    for client in demo {
        match clients::add(db, client, now).await {
            Ok(_) | Err(AddError::Exists) => {}
            Err(e) => return Err(e).context("seeding demo clients"),
        }
    }
    Ok(())
}

/// Creates the bootstrap administrator's API token on first start and writes it to
/// `<data_dir>/admin.token` (mode 0600). Returns the token when it was created.
///
/// # Errors
/// Fails when the database fails or the file cannot be written.
pub async fn bootstrap_admin(db: &Db, data_dir: &Path, now: i64) -> anyhow::Result<Option<String>> {
    let exists = sqlx::query("SELECT 1 AS found FROM api_tokens WHERE name = 'bootstrap-admin'")
        .fetch_optional(db.pool())
        .await?;
    if exists.is_some() {
        return Ok(None);
    }
    let token = dge_authz::caller::create_api_token(
        db,
        "bootstrap-admin",
        dge_authz::caller::ADMIN_SCOPE,
        now,
    )
    .await?;
    let path = data_dir.join("admin.token");
    write_private(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(token))
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")
}
