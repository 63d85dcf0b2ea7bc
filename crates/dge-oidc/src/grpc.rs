//! The `ClientRegistry` gRPC service.

use dge_authz::Authenticator;
use dge_authz::caller::unavailable;
use dge_proto::v1 as pb;
use dge_proto::v1::client_registry_server::ClientRegistry;
use dge_store::Db;
use tonic::{Request, Response, Status};

use crate::clients::{
    self, AddError, ChangeError, Client, ClientChanges, ClientSettings, NewClient,
};

/// Registration of OIDC clients by administrators.
#[derive(Debug, Clone)]
pub struct ClientRegistryService {
    db: Db,
    auth: Authenticator,
}

impl ClientRegistryService {
    /// A new service.
    #[must_use]
    pub fn new(db: Db, auth: Authenticator) -> Self {
        Self { db, auth }
    }

    /// Makes the signing key of a client's algorithm (RS256 is made only for clients
    /// that ask for it) when the client is registered, so that the JWKS a module
    /// fetches once registered already holds it, rather than at its first token.
    // Other replicas read the new key at their next reload of the ring (a minute at
    // most); a module that fetched their JWKS in that minute retries on an unknown
    // `kid`, as relying parties do.
    async fn publish_key_for(&self, alg: &str) {
        if let Err(e) = self.auth.keys().ensure_alg(alg).await {
            // The key is then made at the client's first token.
            tracing::error!(error = %dge_core::ErrorChain(&e), alg, "signing key not made at registration");
        }
    }
}

fn to_proto(c: Client) -> pb::Client {
    pb::Client {
        id: c.id,
        name: c.name,
        redirect_uris: c.redirect_uris,
        confidential: c.confidential,
        first_party: c.first_party,
        post_logout_redirect_uris: c.post_logout_redirect_uris,
        settings: Some(pb::ClientSettings {
            service_scopes: c.settings.service_scopes,
            userinfo_signed: c.settings.userinfo_signed,
            id_token_alg: c.settings.id_token_alg,
            backchannel_logout_uri: c.settings.backchannel_logout_uri.unwrap_or_default(),
            jwks: c.settings.jwks.unwrap_or_default(),
        }),
    }
}

#[tonic::async_trait]
impl ClientRegistry for ClientRegistryService {
    async fn add_client(
        &self,
        request: Request<pb::AddClientRequest>,
    ) -> Result<Response<pb::AddClientResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        let settings = r.settings.map(from_proto).unwrap_or_else(default_settings);
        let new = NewClient {
            id: r.id.trim().to_owned(),
            name: r.name,
            redirect_uris: r.redirect_uris,
            post_logout_redirect_uris: r.post_logout_redirect_uris,
            confidential: r.confidential,
            first_party: r.first_party,
            secret: None,
        };
        let id = new.id.clone();
        let secret = match clients::add_with_settings(
            &self.db,
            new,
            &settings,
            &caller.actor(),
            self.auth.now(),
        )
        .await
        {
            Ok(secret) => secret,
            Err(AddError::Invalid(v)) => return Err(v.into_status()),
            Err(AddError::Exists) => {
                return Err(Status::already_exists(
                    "un client porte déjà cet identifiant",
                ));
            }
            Err(AddError::Store(e)) => return Err(unavailable(e)),
        };
        tracing::info!(client_id = %id, actor = %caller.actor(), "oidc client registered");
        self.publish_key_for(&settings.id_token_alg).await;
        let client = clients::find(&self.db, &id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::internal("client vanished"))?;
        Ok(Response::new(pb::AddClientResponse {
            client: Some(to_proto(client)),
            client_secret: secret.unwrap_or_default(),
        }))
    }

    async fn list_clients(
        &self,
        request: Request<pb::ListClientsRequest>,
    ) -> Result<Response<pb::ListClientsResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let clients = clients::list(&self.db).await.map_err(unavailable)?;
        Ok(Response::new(pb::ListClientsResponse {
            clients: clients.into_iter().map(to_proto).collect(),
        }))
    }

    async fn update_client(
        &self,
        request: Request<pb::UpdateClientRequest>,
    ) -> Result<Response<pb::UpdateClientResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        let id = r.id.trim().to_owned();
        let changes = changes_from_proto(r);
        let actor = caller.actor();
        let client = clients::lifecycle::update(&self.db, &id, &changes, &actor, self.auth.now())
            .await
            .map_err(change_status)?;
        let fields = changes.fields().join(",");
        tracing::info!(client_id = %id, actor = %actor, fields = %fields, "oidc client updated");
        self.publish_key_for(&client.settings.id_token_alg).await;
        Ok(Response::new(pb::UpdateClientResponse {
            client: Some(to_proto(client)),
        }))
    }

    async fn rotate_client_secret(
        &self,
        request: Request<pb::RotateClientSecretRequest>,
    ) -> Result<Response<pb::RotateClientSecretResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let id = request.into_inner().id.trim().to_owned();
        required_id(&id)?;
        let actor = caller.actor();
        let secret = clients::lifecycle::rotate_secret(&self.db, &id, &actor, self.auth.now())
            .await
            .map_err(change_status)?;
        tracing::info!(client_id = %id, actor = %actor, "oidc client secret rotated");
        Ok(Response::new(pb::RotateClientSecretResponse {
            client_secret: secret,
        }))
    }

    async fn remove_client(
        &self,
        request: Request<pb::RemoveClientRequest>,
    ) -> Result<Response<pb::RemoveClientResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let id = request.into_inner().id.trim().to_owned();
        required_id(&id)?;
        let actor = caller.actor();
        let removed = clients::lifecycle::remove(&self.db, &id, &actor, self.auth.now())
            .await
            .map_err(change_status)?;
        tracing::info!(
            client_id = %id,
            actor = %actor,
            access_tokens_revoked = removed.access_tokens,
            refresh_tokens_deleted = removed.refresh_tokens,
            consents_deleted = removed.consents,
            "oidc client removed"
        );
        Ok(Response::new(pb::RemoveClientResponse {
            access_tokens_revoked: removed.access_tokens,
            refresh_tokens_deleted: removed.refresh_tokens,
            consents_deleted: removed.consents,
        }))
    }
}

/// The answer to a refused change.
fn change_status(e: ChangeError) -> Status {
    match e {
        ChangeError::Invalid(v) => v.into_status(),
        ChangeError::NotFound => Status::not_found("aucun client ne porte cet identifiant"),
        ChangeError::Public => Status::failed_precondition(
            "client public : il n'a pas de secret (il s'authentifie par PKCE)",
        ),
        ChangeError::Store(e) => unavailable(e),
    }
}

/// The changes of an `UpdateClient` request: absent fields are kept.
fn changes_from_proto(r: pb::UpdateClientRequest) -> ClientChanges {
    let cleared = |v: String| Some(v).filter(|v| !v.is_empty());
    ClientChanges {
        name: r.name,
        redirect_uris: r.redirect_uris.map(|l| l.values),
        post_logout_redirect_uris: r.post_logout_redirect_uris.map(|l| l.values),
        first_party: r.first_party,
        service_scopes: r.service_scopes.map(|l| l.values),
        userinfo_signed: r.userinfo_signed,
        id_token_alg: r.id_token_alg,
        backchannel_logout_uri: r.backchannel_logout_uri.map(cleared),
        jwks: r.jwks.map(cleared),
    }
}

fn default_settings() -> ClientSettings {
    ClientSettings {
        id_token_alg: "ES256".into(),
        ..ClientSettings::default()
    }
}

/// Settings as sent over gRPC: empty strings mean "the default".
fn from_proto(s: pb::ClientSettings) -> ClientSettings {
    let some = |v: String| Some(v).filter(|v| !v.is_empty());
    ClientSettings {
        service_scopes: s.service_scopes,
        userinfo_signed: s.userinfo_signed,
        id_token_alg: some(s.id_token_alg).unwrap_or_else(|| "ES256".into()),
        backchannel_logout_uri: some(s.backchannel_logout_uri),
        jwks: some(s.jwks),
    }
}

/// An empty client id is a field error, not an unknown client.
fn required_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        let mut v = dge_core::Violations::new();
        v.add("id", "required", "l'identifiant du client est obligatoire");
        return Err(v.into_status());
    }
    Ok(())
}
