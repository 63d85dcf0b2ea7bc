//! The pending queue: oldest first, filtered, paginated by keyset so a page never
//! repeats or skips an account when others are decided meanwhile.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dge_registry::Account;
use sqlx::Row;

use crate::{Actor, Error, Result, Workflow};

/// The longest text a search of the queue takes.
pub const TEXT_MAX: usize = 200;

/// Filters of the pending queue.
#[derive(Debug, Clone, Default)]
pub struct PendingFilter {
    /// Only this organisation.
    pub organisation_id: Option<String>,
    /// Only members of trusted (or untrusted) organisations.
    pub trusted: Option<bool>,
    /// Only accounts created at least this many seconds ago.
    pub min_age_secs: i64,
    /// Case-insensitive text in names, login, email, organisation or description.
    pub text: Option<String>,
}

fn encode_cursor(created_at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

fn decode_cursor(token: &str) -> Option<(i64, String)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (at, id) = raw.split_once(':')?;
    Some((at.parse().ok()?, id.to_owned()))
}

impl Workflow {
    /// One page of the pending queue, and the token of the next page.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad page token or a text over [`TEXT_MAX`]
    /// characters; storage errors.
    pub async fn pending(
        &self,
        actor: &Actor,
        filter: &PendingFilter,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<Account>, String)> {
        let size = i64::from(if page_size == 0 {
            50
        } else {
            page_size.min(500)
        });
        let (after_at, after_id) = if page_token.is_empty() {
            (i64::MIN, String::new())
        } else {
            decode_cursor(page_token)
                .ok_or_else(|| Error::field("page_token", "invalid", "jeton de page invalide"))?
        };
        // A search is a few words; SQLite refuses LIKE patterns over 50 000 bytes,
        // which answered INTERNAL (a tester's finding).
        if filter
            .text
            .as_deref()
            .is_some_and(|t| t.trim().chars().count() > TEXT_MAX)
        {
            return Err(Error::field(
                "text",
                "too_long",
                &format!("le texte cherché ne peut pas dépasser {TEXT_MAX} caractères"),
            ));
        }
        let text = filter
            .text
            .as_deref()
            .map(|t| format!("%{}%", t.trim().to_lowercase()))
            .unwrap_or_default();
        let trusted = filter.trusted.map_or(-1, i64::from);
        let restricted = actor
            .organisations()
            .map(|o| o.join(","))
            .unwrap_or_default();
        let rows = sqlx::query(
            "SELECT a.id, a.created_at FROM accounts a LEFT JOIN organisations o ON o.id = a.organisation_id \
             WHERE a.status = 'pending' \
             AND (a.created_at > $1 OR (a.created_at = $1 AND a.id > $2)) \
             AND ($3 = '' OR a.organisation_id = $3) \
             AND ($4 = -1 OR COALESCE(o.trusted, 0) = $4) \
             AND a.created_at <= $5 \
             AND ($6 = '' OR LOWER(a.given_name || ' ' || a.family_name || ' ' || COALESCE(a.login, '') || ' ' || \
                  a.email || ' ' || COALESCE(o.name, '') || ' ' || a.description) LIKE $6) \
             AND ($7 = '' OR (',' || $7 || ',') LIKE ('%,' || COALESCE(a.organisation_id, '') || ',%')) \
             ORDER BY a.created_at, a.id LIMIT $8",
        )
        .bind(after_at)
        .bind(&after_id)
        .bind(filter.organisation_id.as_deref().unwrap_or(""))
        .bind(trusted)
        .bind(self.registry.now() - filter.min_age_secs.max(0))
        .bind(&text)
        .bind(&restricted)
        .bind(size + 1)
        .fetch_all(self.db().pool())
        .await?;
        let mut accounts = Vec::new();
        for row in rows.iter().take(usize::try_from(size).unwrap_or(50)) {
            let id: String = row.try_get("id")?;
            if let Some(a) = dge_registry::store::find_account(self.db(), &id).await? {
                accounts.push(a);
            }
        }
        let next = if rows.len() > accounts.len() {
            accounts
                .last()
                .map(|a| encode_cursor(a.created_at, &a.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((accounts, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = encode_cursor(1_800_000_000, "01a2-x");
        assert_eq!(
            decode_cursor(&c),
            Some((1_800_000_000, "01a2-x".to_owned()))
        );
        assert_eq!(decode_cursor("!!"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("nocolon")), None);
    }
}
