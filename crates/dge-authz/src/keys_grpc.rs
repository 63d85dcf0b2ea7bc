//! The `SigningKeys` gRPC service: list and rotate the signing keys.

use std::sync::Arc;

use dge_core::Violations;
use dge_proto::v1 as pb;
use dge_proto::v1::signing_keys_server::SigningKeys;
use tonic::{Request, Response, Status};

use crate::caller::unavailable;
use crate::keys::KeyInfo;
use crate::{Authenticator, Keys};

/// The least delay between publishing a rotated key and its first signature, by
/// default: relying parties cache the JWKS for 300 s, and replicas reload keys every
/// 60 s; a key that signed sooner would fail at every cache still holding the old set.
pub const DEFAULT_MIN_ACTIVATE_SECS: i64 = 300;

/// The longest delay accepted (30 days): a longer one is almost surely a typo, and the
/// old key would sign on meanwhile.
pub const MAX_ACTIVATE_SECS: i64 = 30 * 24 * 3600;

/// Key management for administrators.
#[derive(Debug, Clone)]
pub struct SigningKeysService {
    keys: Arc<Keys>,
    auth: Authenticator,
    token_ttl_secs: i64,
    min_activate_secs: i64,
}

impl SigningKeysService {
    /// A new service; `token_ttl_secs` is the longest life of a signed token.
    #[must_use]
    pub fn new(keys: Arc<Keys>, auth: Authenticator, token_ttl_secs: i64) -> Self {
        Self {
            keys,
            auth,
            token_ttl_secs,
            min_activate_secs: DEFAULT_MIN_ACTIVATE_SECS,
        }
    }

    /// The same service with another least activation delay (the embedded default's
    /// tests shorten it).
    #[must_use]
    pub fn with_min_activate_secs(mut self, secs: i64) -> Self {
        self.min_activate_secs = secs.clamp(0, MAX_ACTIVATE_SECS);
        self
    }
}

fn to_proto(k: KeyInfo) -> pb::SigningKey {
    pb::SigningKey {
        kid: k.kid,
        alg: k.alg,
        created_at: k.created_at,
        signs_from: k.signs_from,
        published_until: k.published_until.unwrap_or(0),
    }
}

#[tonic::async_trait]
impl SigningKeys for SigningKeysService {
    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let keys = self.keys.list().await.map_err(unavailable)?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: keys.into_iter().map(to_proto).collect(),
        }))
    }

    async fn rotate_key(
        &self,
        request: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        let alg = if r.alg.is_empty() {
            "ES256"
        } else {
            r.alg.as_str()
        };
        let mut v = Violations::new();
        if !matches!(alg, "ES256" | "RS256") {
            v.add("alg", "invalid", "ES256 ou RS256");
        }
        if !(self.min_activate_secs..=MAX_ACTIVATE_SECS).contains(&r.activate_after_secs) {
            v.add(
                "activate_after_secs",
                "out_of_range",
                format!(
                    "le délai avant la première signature doit être compris entre {} et {} secondes \
                     (les modules et les répliques doivent d'abord lire la nouvelle clé)",
                    self.min_activate_secs, MAX_ACTIVATE_SECS
                ),
            );
        }
        v.into_result().map_err(Violations::into_status)?;
        let kid = self
            .keys
            .rotate(alg, r.activate_after_secs, self.token_ttl_secs)
            .await
            .map_err(unavailable)?;
        tracing::info!(kid = %kid, actor = %caller.actor(), "signing key rotated by an administrator");
        let key = self
            .keys
            .list()
            .await
            .map_err(unavailable)?
            .into_iter()
            .find(|k| k.kid == kid)
            .map(to_proto);
        Ok(Response::new(pb::RotateKeyResponse { key }))
    }
}
