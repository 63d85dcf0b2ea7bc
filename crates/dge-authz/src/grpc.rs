//! The `Authorization` gRPC service.

use dge_core::Violations;
use dge_proto::v1::authorization_server::Authorization;
use dge_proto::v1::{
    CheckRequest, CheckResponse, IntrospectRequest, IntrospectResponse, ListRightsRequest,
    ListRightsResponse, RevokeRequest, RevokeResponse,
};
use dge_store::Db;
use dge_store::sessions::Sessions;
use sqlx::Row;
use tonic::{Request, Response, Status};

use crate::caller::{
    CHECK_SCOPE, CheckAnswer, INTROSPECT_SCOPE, REVOKE_SCOPE, RIGHTS_SCOPE, unavailable,
};
use crate::grants::{self, TokenInfo, TokenKind};
use crate::{Authenticator, rights};

/// Answers whether a person's access token carries a right.
#[derive(Debug, Clone)]
pub struct AuthorizationService {
    db: Db,
    auth: Authenticator,
    /// Where the browser sessions live: a refresh token without `offline_access` is
    /// active only while its session is.
    sessions: Sessions,
}

impl AuthorizationService {
    /// A new service.
    #[must_use]
    pub fn new(db: Db, auth: Authenticator, sessions: Sessions) -> Self {
        Self { db, auth, sessions }
    }

    fn refused(subject: String, reason: &str) -> Response<CheckResponse> {
        Response::new(CheckResponse {
            allowed: false,
            subject,
            reason: reason.to_owned(),
        })
    }
}

#[tonic::async_trait]
impl Authorization for AuthorizationService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // A service whose token carries `authz:check`, or an administrator.
        let caller = self
            .auth
            .require_scope(request.metadata(), CHECK_SCOPE)
            .await?;
        let req = request.into_inner();
        let mut violations = Violations::new();
        if req.access_token.trim().is_empty() {
            violations.add(
                "access_token",
                "required",
                "le jeton d'accès est obligatoire",
            );
        }
        if !is_right_name(&req.right) {
            violations.add("right", "invalid", "un droit s'écrit module:droit");
        }
        violations.into_result().map_err(Violations::into_status)?;

        let now = self.auth.now();
        let Ok(claims) =
            self.auth
                .keys()
                .verify_access_token(&req.access_token, self.auth.issuer(), now)
        else {
            return Ok(Self::refused(String::new(), "invalid_token"));
        };
        // A service checks only the tokens of its own client: a token a person gave
        // another module is not a credential for this one.
        if !caller.audience_includes(&claims.client_id) {
            return Ok(Self::refused(String::new(), "wrong_audience"));
        }
        let answer = self
            .check_answer(&claims.jti, &claims.sub, &req.right, now)
            .await?;
        Ok(match answer {
            CheckAnswer::Revoked => Self::refused(String::new(), "invalid_token"),
            CheckAnswer::Inactive => Self::refused(claims.sub, "inactive_account"),
            CheckAnswer::Missing => Self::refused(claims.sub, "missing_right"),
            CheckAnswer::Allowed => Response::new(CheckResponse {
                allowed: true,
                subject: claims.sub,
                reason: String::new(),
            }),
        })
    }

    async fn list_rights(
        &self,
        request: Request<ListRightsRequest>,
    ) -> Result<Response<ListRightsResponse>, Status> {
        self.auth
            .require_scope(request.metadata(), RIGHTS_SCOPE)
            .await?;
        let subject = request.into_inner().subject;
        if subject.trim().is_empty() {
            let mut v = Violations::new();
            v.add("subject", "required", "le compte est obligatoire");
            return Err(v.into_status());
        }
        let id = rights::resolve_account(&self.db, &subject)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found("account not found"))?;
        let rights = rights::rights_of(&self.db, &id, self.auth.now())
            .await
            .map_err(unavailable)?;
        Ok(Response::new(ListRightsResponse { rights }))
    }

    async fn introspect(
        &self,
        request: Request<IntrospectRequest>,
    ) -> Result<Response<IntrospectResponse>, Status> {
        let caller = self
            .auth
            .require_scope(request.metadata(), INTROSPECT_SCOPE)
            .await?;
        let info = self.inspect(&request.into_inner().token).await?;
        // Outside the caller's audience a token is inactive (RFC 7662 §2.2).
        let info = info.filter(|i| caller.audience_includes(&i.client_id));
        Ok(Response::new(
            info.map_or_else(IntrospectResponse::default, introspection),
        ))
    }

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let caller = self
            .auth
            .require_scope(request.metadata(), REVOKE_SCOPE)
            .await?;
        let info = self.inspect(&request.into_inner().token).await?;
        let Some(info) = info.filter(|i| caller.audience_includes(&i.client_id)) else {
            return Ok(Response::new(RevokeResponse { revoked: false }));
        };
        grants::revoke(&self.db, &info, self.auth.now())
            .await
            .map_err(unavailable)?;
        tracing::info!(client_id = %info.client_id, actor = %caller.actor(), "token revoked");
        Ok(Response::new(RevokeResponse { revoked: true }))
    }
}

impl AuthorizationService {
    /// Revocation, account status and the right, from the cache of answers or in one
    /// round trip: Check is on the path of every page of the portal.
    async fn check_answer(
        &self,
        jti: &str,
        sub: &str,
        right: &str,
        now: i64,
    ) -> Result<CheckAnswer, Status> {
        // Taken before the read: a change committed meanwhile leaves the answer stale.
        let generation = self.db.access_generation();
        let key = (jti.to_owned(), right.to_owned());
        if let Some(answer) = self.auth.checks.get(&key, generation) {
            return Ok(answer);
        }
        let row = sqlx::query(
            "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM issued_tokens WHERE jti = $1 AND revoked_at IS NOT NULL) THEN 1 ELSE 0 END AS BIGINT) AS revoked, \
                    (SELECT status FROM accounts WHERE id = $2) AS status, \
                    CAST(CASE WHEN EXISTS (SELECT 1 FROM grants WHERE account_id = $2 AND right_name = $3 \
                                 AND (expires_at IS NULL OR expires_at > $4)) THEN 1 ELSE 0 END AS BIGINT) AS held",
        )
        .bind(jti)
        .bind(sub)
        .bind(right)
        .bind(now)
        .fetch_one(self.db.pool())
        .await
        .map_err(unavailable)?;
        let revoked: i64 = row.try_get("revoked").map_err(unavailable)?;
        let status: Option<String> = row.try_get("status").map_err(unavailable)?;
        let held: i64 = row.try_get("held").map_err(unavailable)?;
        // A grant that reaches its end date is seen at most `ANSWER_TTL` late.
        let answer = if revoked != 0 {
            CheckAnswer::Revoked
        } else if status.as_deref() != Some("active") {
            CheckAnswer::Inactive
        } else if held == 0 {
            CheckAnswer::Missing
        } else {
            CheckAnswer::Allowed
        };
        self.auth.checks.insert(key, answer, generation);
        Ok(answer)
    }

    async fn inspect(&self, token: &str) -> Result<Option<TokenInfo>, Status> {
        if token.trim().is_empty() {
            let mut v = Violations::new();
            v.add("token", "required", "le jeton est obligatoire");
            return Err(v.into_status());
        }
        grants::inspect(
            &self.db,
            &self.sessions,
            self.auth.keys(),
            self.auth.issuer(),
            self.auth.now(),
            token,
        )
        .await
        .map_err(unavailable)
    }
}

fn introspection(info: TokenInfo) -> IntrospectResponse {
    IntrospectResponse {
        active: true,
        token_type: match info.kind {
            TokenKind::Access => "access_token",
            TokenKind::Refresh => "refresh_token",
        }
        .to_owned(),
        client_id: info.client_id,
        subject: info.sub,
        scope: info.scope,
        issued_at: info.iat,
        expires_at: info.exp,
    }
}

/// Whether `right` has the shape `module:name` (with optional further `:parts`).
#[must_use]
pub fn is_right_name(right: &str) -> bool {
    let mut parts = right.split(':');
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    let module = parts.next().is_some_and(ok_part);
    let rest: Vec<&str> = parts.collect();
    module && !rest.is_empty() && rest.iter().all(|p| ok_part(p))
}

#[cfg(test)]
mod tests {
    use super::is_right_name;

    #[test]
    fn right_names_are_module_colon_name() {
        assert!(is_right_name("datahub:publish"));
        assert!(is_right_name("communautes:space:general"));
        assert!(!is_right_name("datahub"));
        assert!(!is_right_name("datahub:"));
        assert!(!is_right_name("DataHub:publish"));
        assert!(!is_right_name("datahub:pub lish"));
    }
}
