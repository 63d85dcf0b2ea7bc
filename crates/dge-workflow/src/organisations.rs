//! The organisation directory.

use dge_core::Violations;
use dge_proto::v1::Organisation;
use dge_registry::domain::signup::organisation_name_keys;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{Actor, Error, Result, Workflow, siret};

/// An organisation to create or import.
#[derive(Debug, Clone, Default)]
pub struct NewOrganisation {
    /// Display name.
    pub name: String,
    /// SIRET, possibly with spaces; empty when unknown.
    pub siret: String,
    /// Member ("trusted") organisation.
    pub trusted: bool,
    /// Email domains of its staff.
    pub email_domains: Vec<String>,
}

/// A validated organisation.
#[derive(Debug, Clone)]
struct Clean {
    name: String,
    siret: Option<String>,
    trusted: bool,
    domains: String,
}

fn valid_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    // The last label of a host name is never all digits: `127.0.0.1` is an address,
    // and no one's mail address ends in one.
    let top_level_ok = labels
        .last()
        .is_some_and(|l| !l.chars().all(|c| c.is_ascii_digit()));
    top_level_ok
        && labels.len() >= 2
        && d.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Domains of the largest public mail services used in France: anyone may get an
/// address there, so they say nothing of an organisation. A trusted organisation
/// with one of them would hand its quick validation to everyone.
const PUBLIC_MAIL_DOMAINS: &[&str] = &[
    "aliceadsl.fr",
    "aol.com",
    "aol.fr",
    "bbox.fr",
    "club-internet.fr",
    "free.fr",
    "gmail.com",
    "gmail.fr",
    "gmx.com",
    "gmx.de",
    "gmx.fr",
    "googlemail.com",
    "hotmail.com",
    "hotmail.fr",
    "icloud.com",
    "laposte.net",
    "live.com",
    "live.fr",
    "mac.com",
    "mail.com",
    "me.com",
    "msn.com",
    "neuf.fr",
    "numericable.fr",
    "orange.fr",
    "outlook.com",
    "outlook.fr",
    "proton.me",
    "protonmail.com",
    "sfr.fr",
    "tutanota.com",
    "wanadoo.fr",
    "web.de",
    "yahoo.com",
    "yahoo.fr",
    "yandex.com",
    "ymail.com",
    "zoho.com",
];

/// Whether `domain` is one of [`PUBLIC_MAIL_DOMAINS`] or below one
/// (`mail.gmail.com` names no organisation either).
fn is_public_mail(domain: &str) -> bool {
    PUBLIC_MAIL_DOMAINS.iter().any(|p| {
        domain == *p
            || domain
                .strip_suffix(p)
                .is_some_and(|head| head.ends_with('.'))
    })
}

/// The most email domains one organisation may hold (a tester sent 20 000).
pub const DOMAINS_MAX: usize = 100;

/// The valid parts of `new` and what is wrong with the others: an invalid name is
/// left empty and an invalid SIRET out, so that what the directory already has can
/// still be checked and every problem told at once.
fn clean_parts(new: &NewOrganisation) -> (Clean, Violations) {
    let mut v = Violations::new();
    // Styled and full-width letters written plainly: `Ｖｉｌｌｅ ｄｅ Ｎａｎｃｙ` is the
    // directory's `Ville de Nancy`, and clashes with it.
    // Runs of spaces become one; a line break or a tab inside is refused below.
    let mut name = dge_registry::domain::signup::single_spaces(
        dge_registry::domain::signup::plain_letters(&new.name).trim(),
    );
    if name.is_empty() || name.chars().count() > 200 {
        v.add(
            "name",
            "invalid",
            "le nom est obligatoire (200 caractères au plus)",
        );
    } else if dge_registry::domain::signup::has_hidden_characters(&name) {
        // `Région\u{200B} Grand Est` must not pass for the trusted `Région Grand Est`.
        v.add(
            "name",
            "control_characters",
            "le nom contient des caractères non autorisés (invisibles ou de contrôle)",
        );
    } else if dge_registry::domain::signup::has_stacked_marks(&name) {
        v.add(
            "name",
            "combining_marks",
            "le nom superpose trop d'accents ou de signes sur une même lettre (3 au plus)",
        );
    } else if dge_registry::domain::signup::has_styled_letters(&name) {
        // `Ville de ɴancy`, `Région Grand Est` underlined: a lookalike by style.
        v.add(
            "name",
            "characters",
            "le nom contient des lettres décorées (petites capitales, lettres barrées, soulignées ou entourées) : écrivez-le en lettres simples",
        );
    } else if dge_registry::domain::signup::has_mixed_script_words(&name) {
        // `Ville de Nanсy` with a Cyrillic `с` beside the real `Ville de Nancy`.
        v.add(
            "name",
            "mixed_scripts",
            "un mot du nom mélange des alphabets (une lettre cyrillique parmi des lettres latines, par exemple)",
        );
    }
    if !v.is_empty() {
        name.clear();
    }
    let mut siret = siret::normalise(&new.siret);
    if !siret.is_empty() && !siret::is_valid(&siret) {
        v.add(
            "siret",
            "invalid",
            "le SIRET doit compter 14 chiffres et avoir une clé de contrôle valide",
        );
        siret.clear();
    }
    let mut domains = Vec::new();
    for d in &new.email_domains {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        if d.is_empty() {
            v.add(
                "email_domains",
                "empty",
                "un des domaines est vide : retirez-le ou complétez-le",
            );
            continue;
        }
        // Shown to the administrator as escaped text: a CSV line must not reach
        // their terminal with its control characters.
        let shown = d.escape_debug().to_string();
        if is_public_mail(&d) {
            v.add(
                "email_domains",
                "public_mail",
                format!(
                    "{shown} est une messagerie ouverte à tous : ce domaine ne désigne pas un organisme"
                ),
            );
        } else if valid_domain(&d) {
            domains.push(d);
        } else {
            v.add(
                "email_domains",
                "invalid",
                format!("domaine invalide : {shown}"),
            );
        }
    }
    domains.sort();
    domains.dedup();
    if domains.len() > DOMAINS_MAX {
        v.add(
            "email_domains",
            "too_many",
            format!("{DOMAINS_MAX} domaines au plus par organisme"),
        );
        domains.clear();
    }
    let c = Clean {
        name,
        siret: (!siret.is_empty()).then_some(siret),
        trusted: new.trusted,
        domains: domains.join(","),
    };
    (c, v)
}

/// Every problem of `new` at once, its own and what another organisation of the
/// directory already has (`except`: the one being changed), or its clean form.
async fn checked(
    conn: &mut AnyConnection,
    new: &NewOrganisation,
    except: &str,
) -> Result<Result<Clean, Violations>> {
    let (c, mut v) = clean_parts(new);
    if let Some(s) = &c.siret
        && siret_taken(conn, s, except).await?
    {
        v.add(
            "siret",
            "taken",
            "un organisme de l'annuaire a déjà ce SIRET",
        );
    }
    v.extend(clashes(conn, &c, except).await?);
    Ok(v.into_result().map(|()| c))
}

fn from_row(r: &AnyRow) -> sqlx::Result<Organisation> {
    let domains: String = r.try_get("email_domains")?;
    Ok(Organisation {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        siret: r.try_get::<Option<String>, _>("siret")?.unwrap_or_default(),
        trusted: r.try_get::<i64, _>("trusted")? == 1,
        status: r.try_get("status")?,
        email_domains: domains
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

const COLUMNS: &str = "id, name, siret, trusted, status, email_domains";

async fn siret_taken(conn: &mut AnyConnection, siret: &str, except: &str) -> sqlx::Result<bool> {
    let row = sqlx::query("SELECT 1 AS found FROM organisations WHERE siret = $1 AND id <> $2")
        .bind(siret)
        .bind(except)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// What another active organisation of the directory already has of `c`: its name
/// (compared without case), or one of its email domains. `except`: the organisation
/// being changed.
async fn clashes(conn: &mut AnyConnection, c: &Clean, except: &str) -> Result<Violations> {
    Ok(Directory::load(conn, except).await?.clashes(c))
}

/// The names and email domains of the active organisations, read once: an import
/// checks each of its lines against them and adds the lines it keeps, instead of
/// reading the whole directory again for every line (2 000 lines took 27 s on
/// SQLite, holding its write lock, a tester's finding).
struct Directory {
    /// Name key → the name as written.
    names: std::collections::HashMap<String, String>,
    /// Email domain → the name of the organisation that has it.
    domains: std::collections::HashMap<String, String>,
}

impl Directory {
    async fn load(conn: &mut AnyConnection, except: &str) -> Result<Self> {
        let rows = sqlx::query(
            "SELECT name, email_domains FROM organisations WHERE status = 'active' AND id <> $1",
        )
        .bind(except)
        .fetch_all(conn)
        .await?;
        let mut directory = Self {
            names: std::collections::HashMap::with_capacity(rows.len()),
            domains: std::collections::HashMap::new(),
        };
        for row in &rows {
            let name: String = row.try_get("name")?;
            let domains: String = row.try_get("email_domains")?;
            directory.add(&name, &domains);
        }
        Ok(directory)
    }

    fn add(&mut self, name: &str, domains: &str) {
        for key in organisation_name_keys(name) {
            if !key.is_empty() {
                self.names.entry(key).or_insert_with(|| name.to_owned());
            }
        }
        for d in domains.split(',').filter(|d| !d.is_empty()) {
            self.domains
                .entry(d.to_owned())
                .or_insert_with(|| name.to_owned());
        }
    }

    fn clashes(&self, c: &Clean) -> Violations {
        let mut v = Violations::new();
        let alike = organisation_name_keys(&c.name)
            .into_iter()
            .filter(|key| !key.is_empty())
            .find_map(|key| self.names.get(&key));
        if let Some(name) = alike {
            v.add(
                "name",
                "taken",
                format!("un organisme de l'annuaire porte déjà ce nom : {name}"),
            );
        }
        for d in c.domains.split(',').filter(|d| !d.is_empty()) {
            if let Some(name) = self.domains.get(d) {
                v.add(
                    "email_domains",
                    "taken",
                    format!("le domaine {d} est déjà celui de l'organisme {name}"),
                );
            }
        }
        v
    }
}

/// The messages of `v`, for an import's report.
fn joined(v: &Violations) -> String {
    v.iter()
        .map(|x| x.message.as_str())
        .collect::<Vec<_>>()
        .join(" ; ")
}

async fn insert(conn: &mut AnyConnection, c: &Clean, now: i64) -> sqlx::Result<String> {
    let id = dge_core::new_id();
    sqlx::query(
        "INSERT INTO organisations (id, name, name_key, siret, trusted, status, email_domains, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7)",
    )
    .bind(&id)
    .bind(&c.name)
    .bind(c.name.to_lowercase())
    .bind(&c.siret)
    .bind(i64::from(c.trusted))
    .bind(&c.domains)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Result of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows written.
    pub imported: u32,
    /// Rows whose SIRET was already in the directory.
    pub unchanged: u32,
    /// `(line, reason)` of each refused row.
    pub rejected: Vec<(u32, String)>,
    /// Whether anything was written.
    pub committed: bool,
}

impl Workflow {
    /// The directory, proposed organisations first.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn organisations(&self) -> Result<Vec<Organisation>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM organisations ORDER BY status DESC, name_key"
        ))
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(from_row)
            .collect::<sqlx::Result<_>>()
            .map_err(Error::Store)
    }

    async fn organisation(&self, id: &str) -> Result<Organisation> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM organisations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db().pool())
        .await?
        .ok_or(Error::OrganisationNotFound)?;
        Ok(from_row(&row)?)
    }

    /// Adds an organisation to the directory.
    ///
    /// # Errors
    /// [`Error::Invalid`] (with a taken SIRET), [`Error::NotAllowed`].
    pub async fn create_organisation(
        &self,
        actor: &Actor,
        new: &NewOrganisation,
    ) -> Result<Organisation> {
        actor.require_admin()?;
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        let c = checked(&mut tx, new, "").await?.map_err(Error::Invalid)?;
        let id = insert(&mut tx, &c, now).await?;
        dge_store::audit(
            &mut tx,
            actor.label(),
            "organisation.created",
            &id,
            &c.name,
            now,
        )
        .await?;
        tx.commit().await?;
        self.organisation(&id).await
    }

    /// Changes an organisation. `None` fields stay as they are. Returns the organisation
    /// and whether anything changed (values equal to the stored ones write nothing).
    ///
    /// # Errors
    /// [`Error::OrganisationNotFound`], [`Error::Invalid`], [`Error::NotAllowed`].
    pub async fn update_organisation(
        &self,
        actor: &Actor,
        id: &str,
        name: Option<String>,
        siret_value: Option<String>,
        trusted: Option<bool>,
        domains: Option<Vec<String>>,
    ) -> Result<(Organisation, bool)> {
        actor.require_admin()?;
        let current = self.organisation(id).await?;
        let merged = NewOrganisation {
            name: name.unwrap_or_else(|| current.name.clone()),
            siret: siret_value.unwrap_or_else(|| current.siret.clone()),
            trusted: trusted.unwrap_or(current.trusted),
            email_domains: domains.unwrap_or_else(|| current.email_domains.clone()),
        };
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        let c = checked(&mut tx, &merged, id)
            .await?
            .map_err(Error::Invalid)?;
        // The audit row tells what changed, each field as it was and as it is.
        let new_siret = c.siret.as_deref().unwrap_or_default();
        let old_domains = current.email_domains.join(",");
        let changes: Vec<String> = [
            ("name", current.name.as_str(), c.name.as_str()),
            ("siret", current.siret.as_str(), new_siret),
            (
                "trusted",
                if current.trusted { "true" } else { "false" },
                if c.trusted { "true" } else { "false" },
            ),
            ("domains", old_domains.as_str(), c.domains.as_str()),
        ]
        .into_iter()
        .filter(|(_, before, after)| before != after)
        .map(|(field, before, after)| format!("{field}: {before} -> {after}"))
        .collect();
        // Nothing would change: no write, and nothing for the audit log to tell.
        if changes.is_empty() {
            return Ok((current, false));
        }
        sqlx::query(
            "UPDATE organisations SET name = $1, name_key = $2, siret = $3, trusted = $4, email_domains = $5, \
             updated_at = $6 WHERE id = $7",
        )
        .bind(&c.name)
        .bind(c.name.to_lowercase())
        .bind(&c.siret)
        .bind(i64::from(c.trusted))
        .bind(&c.domains)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        dge_store::audit(
            &mut tx,
            actor.label(),
            "organisation.updated",
            id,
            &changes.join("; "),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((self.organisation(id).await?, true))
    }

    /// Accepts a proposed organisation, optionally renamed and with its SIRET.
    ///
    /// # Errors
    /// [`Error::WrongState`] when not proposed, then as [`Self::update_organisation`].
    pub async fn accept_organisation(
        &self,
        actor: &Actor,
        id: &str,
        name: &str,
        siret_value: &str,
    ) -> Result<Organisation> {
        actor.require_admin()?;
        let org = self.organisation(id).await?;
        if org.status != "proposed" {
            return Err(Error::WrongState("organisation is not proposed".into()));
        }
        let name = (!name.trim().is_empty()).then(|| name.to_owned());
        let siret_value = (!siret_value.trim().is_empty()).then(|| siret_value.to_owned());
        self.update_organisation(actor, id, name, siret_value, None, None)
            .await?;
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        sqlx::query("UPDATE organisations SET status = 'active', updated_at = $1 WHERE id = $2 AND status = 'proposed'")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        dge_store::audit(&mut tx, actor.label(), "organisation.accepted", id, "", now).await?;
        tx.commit().await?;
        self.organisation(id).await
    }

    /// Merges a proposed organisation into `target`: its members move, it disappears.
    /// Returns how many accounts moved.
    ///
    /// # Errors
    /// [`Error::WrongState`] when the source is not proposed or equals the target.
    pub async fn merge_organisation(
        &self,
        actor: &Actor,
        source: &str,
        target: &str,
    ) -> Result<u32> {
        actor.require_admin()?;
        let from = self.organisation(source).await?;
        let into = self.organisation(target).await?;
        if from.id == into.id {
            return Err(Error::WrongState(
                "an organisation cannot be merged into itself".into(),
            ));
        }
        if from.status != "proposed" {
            return Err(Error::WrongState(
                "only a proposed organisation can be merged into another".into(),
            ));
        }
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        let moved = sqlx::query(
            "UPDATE accounts SET organisation_id = $1, updated_at = $2 WHERE organisation_id = $3",
        )
        .bind(&into.id)
        .bind(now)
        .bind(&from.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM organisations WHERE id = $1")
            .bind(&from.id)
            .execute(&mut *tx)
            .await?;
        dge_store::audit(
            &mut tx,
            actor.label(),
            "organisation.merged",
            &into.id,
            &format!("{} ({moved} accounts)", from.name),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(u32::try_from(moved).unwrap_or(u32::MAX))
    }

    /// Imports organisations: every valid row in one transaction. With `strict`, one
    /// rejected row writes nothing. A row whose SIRET is already known is left alone.
    ///
    /// # Errors
    /// [`Error::NotAllowed`], storage errors.
    pub async fn import_organisations(
        &self,
        actor: &Actor,
        rows: &[(u32, NewOrganisation)],
        strict: bool,
    ) -> Result<ImportReport> {
        actor.require_admin()?;
        let now = self.registry.now();
        let mut report = ImportReport::default();
        let mut tx = self.db().begin().await?;
        let mut seen = std::collections::HashSet::new();
        let mut directory = Directory::load(&mut tx, "").await?;
        for (line, row) in rows {
            // Every problem of the line at once, as for a single organisation.
            let (c, mut v) = clean_parts(row);
            if let Some(s) = &c.siret {
                if !seen.insert(s.clone()) {
                    v.add("siret", "repeated", "SIRET en double dans le fichier");
                } else if siret_taken(&mut tx, s, "").await? {
                    report.unchanged += 1;
                    continue;
                }
            }
            // Rows imported earlier in this file are in the directory already.
            v.extend(directory.clashes(&c));
            if !v.is_empty() {
                report.rejected.push((*line, joined(&v)));
                continue;
            }
            insert(&mut tx, &c, now).await?;
            directory.add(&c.name, &c.domains);
            report.imported += 1;
        }
        if strict && !report.rejected.is_empty() {
            tx.rollback().await?;
            report.imported = 0;
            return Ok(report);
        }
        let detail = format!(
            "{} imported, {} unchanged, {} rejected",
            report.imported,
            report.unchanged,
            report.rejected.len()
        );
        dge_store::audit(
            &mut tx,
            actor.label(),
            "organisation.imported",
            "directory",
            &detail,
            now,
        )
        .await?;
        tx.commit().await?;
        report.committed = true;
        Ok(report)
    }

    /// Makes an account administrator of its own organisation's members.
    ///
    /// # Errors
    /// [`Error::AccountNotFound`], [`Error::WrongState`] without an organisation or
    /// when the account is not active.
    pub async fn add_organisation_admin(&self, actor: &Actor, key: &str) -> Result<()> {
        actor.require_admin()?;
        let account = self.managed_account(actor, key).await?;
        let Some(org) = account.organisation_id.clone() else {
            return Err(Error::WrongState("account has no organisation".into()));
        };
        if account.status != dge_registry::AccountStatus::Active {
            return Err(Error::WrongState("account is not active".into()));
        }
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "INSERT INTO organisation_admins (account_id, organisation_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, organisation_id) DO NOTHING",
        )
        .bind(&account.id)
        .bind(&org)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        dge_store::audit(
            &mut tx,
            actor.label(),
            "organisation.admin_added",
            &account.id,
            &org,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(new: &NewOrganisation) -> Result<Clean, Violations> {
        let (c, v) = clean_parts(new);
        v.into_result().map(|()| c)
    }

    #[test]
    fn public_mail_services_and_their_subdomains_name_no_organisation() {
        for public in [
            "gmail.com",
            "mail.gmail.com",
            "smtp.orange.fr",
            "laposte.net",
        ] {
            assert!(is_public_mail(public), "{public}");
        }
        for own in ["laposte.fr", "notgmail.com", "gmail.com.metz.fr", "metz.fr"] {
            assert!(!is_public_mail(own), "{own}");
        }
    }

    #[test]
    fn organisations_are_checked_and_normalised() {
        let ok = clean(&NewOrganisation {
            name: " Ville de Metz ".into(),
            siret: "216 704 825 00019".into(),
            trusted: true,
            email_domains: vec!["@Metz.fr".into(), "metz.fr".into()],
        })
        .expect("valid");
        assert_eq!(ok.name, "Ville de Metz");
        assert_eq!(ok.siret.as_deref(), Some("21670482500019"));
        assert_eq!(ok.domains, "metz.fr");
        let bad = clean(&NewOrganisation {
            name: String::new(),
            siret: "21670482500018".into(),
            trusted: false,
            email_domains: vec!["not a domain".into(), "-x.fr".into()],
        })
        .unwrap_err();
        let fields: Vec<_> = bad.iter().map(|v| v.field).collect();
        assert_eq!(fields, ["name", "siret", "email_domains", "email_domains"]);
        // The codes of what is wrong with an organisation of this name and domains.
        let refused = |name: &str, email_domains: Vec<String>| {
            let bad = clean(&NewOrganisation {
                name: name.into(),
                siret: String::new(),
                trusted: false,
                email_domains,
            })
            .unwrap_err();
            bad.iter().map(|v| (v.field, v.code)).collect::<Vec<_>>()
        };
        for name in [
            "Région\u{200B} Grand Est",
            "Région\u{2060}Grand Est",
            "Ré\u{AD}gion",
            "Région\nGrand Est",
        ] {
            assert_eq!(
                refused(name, Vec::new()),
                [("name", "control_characters")],
                "{name:?}"
            );
        }
        assert_eq!(
            refused("Mx\u{301}\u{302}\u{303}\u{304}tz", Vec::new()),
            [("name", "combining_marks")]
        );
        let crowded = (0..=DOMAINS_MAX).map(|n| format!("d{n}.metz.fr")).collect();
        assert_eq!(
            refused("Ville de Metz", crowded),
            [("email_domains", "too_many")]
        );
        for lookalike in ["Ville de Nan\u{441}y", "R\u{E9}gion Grand \u{415}st"] {
            assert_eq!(
                refused(lookalike, Vec::new()),
                [("name", "mixed_scripts")],
                "{lookalike:?}"
            );
        }
        // An empty entry is named, not dropped; an address is no domain; what is
        // shown of a bad one is escaped.
        assert_eq!(
            refused("Ville de Metz", vec![String::new(), "metz.fr".into()]),
            [("email_domains", "empty")]
        );
        assert_eq!(
            refused("Ville de Metz", vec!["127.0.0.1".into()]),
            [("email_domains", "invalid")]
        );
        let bad = clean(&NewOrganisation {
            name: "Ville de Metz".into(),
            siret: String::new(),
            trusted: false,
            email_domains: vec!["to\u{1b}[31mul.fr".into()],
        })
        .unwrap_err();
        let message = &bad.iter().next().unwrap().message;
        assert!(
            message.contains("\\u{1b}") && !message.contains('\u{1b}'),
            "{message:?}"
        );
    }
}
