//! Administrators' mistakes over gRPC: each gets a status naming the field at fault,
//! and changes nothing.

use dge_proto::v1 as pb;
use dge_proto::v1::validation_workflow_server::ValidationWorkflow;
use dge_registry::AccountStatus;
use dge_registry::store::find_account;
use dge_workflow::rights::AuditFilter;
use tonic::{Code, Request, Status};

use crate::backends::ENGINES;
use crate::journey::{admin, confirmation_token, form};
use crate::suspension::{World, active, bearer, violations, violations_of, world};

/// The fields of a NOT_FOUND's details, with their descriptions.
fn not_found_fields(status: &Status) -> Vec<(String, String)> {
    violations_of(status, Code::NotFound)
}

/// A confirmed sign-up waiting for the team's decision.
async fn pending(w: &World, login: &str) {
    let email = format!("{login}@nancy.fr");
    w.registry.sign_up(&form(login, &email)).await.unwrap();
    let token = confirmation_token(&w.s.db, &email).await;
    w.registry.confirm_email(&token).await.unwrap();
}

async fn audit_count(w: &World, subject: &str) -> usize {
    w.workflow
        .audit_events(
            &admin(),
            &AuditFilter {
                subject: subject.into(),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn unknown_or_empty_rights_are_named_with_their_field_and_nothing_is_decided() {
    for engine in ENGINES {
        let w = world(engine).await;
        let t = w.admin_token.clone();
        pending(&w, "lbernard").await;
        let approve = |rights: &[&str]| {
            w.grpc.approve_account(bearer(
                &t,
                pb::ApproveAccountRequest {
                    account: "lbernard".into(),
                    grant_rights: rights.iter().map(|r| (*r).to_owned()).collect(),
                },
            ))
        };

        let err = approve(&["datahub:publish", ""]).await.unwrap_err();
        let fields = violations(&err);
        assert_eq!(fields[0].0, "grant_rights", "{engine:?}: {fields:?}");
        assert!(fields[0].1.starts_with("empty: "), "{fields:?}");
        let err = approve(&["datahub:publish", "datahub:pubilsh", "foo:bar"])
            .await
            .unwrap_err();
        let fields = not_found_fields(&err);
        assert_eq!(fields.len(), 2, "{engine:?}: every unknown right named");
        assert_eq!(fields[0].0, "grant_rights", "{engine:?}: {fields:?}");
        assert!(fields[0].1.contains("\"datahub:pubilsh\""), "{fields:?}");
        assert!(fields[1].1.contains("\"foo:bar\""), "{fields:?}");
        // Still pending, no right granted, nothing audited.
        let account = find_account(&w.s.db, "lbernard").await.unwrap().unwrap();
        assert_eq!(account.status, AccountStatus::Pending, "{engine:?}");
        assert!(
            w.workflow
                .grants(&admin(), "lbernard")
                .await
                .unwrap()
                .is_empty(),
            "{engine:?}"
        );
        let approved = approve(&["datahub:publish", " datahub:publish "])
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            approved.account.unwrap().status,
            pb::AccountStatus::Active as i32,
            "{engine:?}"
        );
        // The email names the right granted with the approval.
        let body: String = sqlx::query_scalar(
            "SELECT body_text FROM outbox WHERE recipient = $1 AND kind = 'account_activated'",
        )
        .bind("lbernard@nancy.fr")
        .fetch_one(w.s.db.pool())
        .await
        .unwrap();
        assert!(
            body.contains("Vos droits sur les modules de la plateforme : DataHub : Publier."),
            "{engine:?}: {body}"
        );

        // Revoking a right nobody declared is a mistake, not "it was not held".
        let revoke = |right: &str| {
            w.grpc.revoke_right(bearer(
                &t,
                pb::RevokeRightRequest {
                    account: "lbernard".into(),
                    right: right.into(),
                },
            ))
        };
        let err = revoke("datahub:pubilsh").await.unwrap_err();
        assert_eq!(not_found_fields(&err)[0].0, "right", "{engine:?}");
        assert!(
            !revoke("datahub:dashboards")
                .await
                .unwrap()
                .into_inner()
                .revoked,
            "{engine:?}: declared, not held"
        );
        assert!(
            revoke(" datahub:publish")
                .await
                .unwrap()
                .into_inner()
                .revoked,
            "{engine:?}"
        );
    }
}

#[tokio::test]
async fn a_role_names_its_unknown_right_and_keeps_each_right_once() {
    for engine in ENGINES {
        let w = world(engine).await;
        let t = w.admin_token.clone();
        let define = |rights: &[&str]| {
            w.grpc.define_role(bearer(
                &t,
                pb::DefineRoleRequest {
                    name: "editeur".into(),
                    label: "Éditeur".into(),
                    rights: rights.iter().map(|r| (*r).to_owned()).collect(),
                },
            ))
        };
        let err = define(&["datahub:publish", "datahub:nope", "nomod:x"])
            .await
            .unwrap_err();
        let fields = not_found_fields(&err);
        assert_eq!(fields.len(), 2, "{engine:?}: every unknown right named");
        assert_eq!(fields[0].0, "rights", "{engine:?}");
        assert!(fields[0].1.contains("\"datahub:nope\""), "{fields:?}");
        assert!(fields[1].1.contains("\"nomod:x\""), "{fields:?}");
        assert!(err.message().contains("\"nomod:x\""), "{err:?}");
        assert_eq!(audit_count(&w, "editeur").await, 0, "{engine:?}");
        let err = define(&["datahub:publish", " "]).await.unwrap_err();
        assert_eq!(violations(&err)[0].0, "rights", "{engine:?}");

        let created = define(&["datahub:publish", "datahub:dashboards", " datahub:publish"])
            .await
            .unwrap()
            .into_inner();
        assert!(created.created, "{engine:?}");
        assert!(
            created.added.is_empty() && created.removed.is_empty(),
            "{engine:?}"
        );
        let events = w
            .workflow
            .audit_events(
                &admin(),
                &AuditFilter {
                    subject: "editeur".into(),
                    ..AuditFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            events[0].detail, "datahub:publish datahub:dashboards",
            "{engine:?}"
        );
        active(&w, "cmartin").await;
        let granted = w
            .workflow
            .grant_role(&admin(), "cmartin", "editeur", "")
            .await
            .unwrap();
        assert_eq!(
            granted,
            ["datahub:dashboards", "datahub:publish"],
            "{engine:?}"
        );

        // Defined again: the answer says what changed, or that nothing did.
        let same = define(&["datahub:dashboards", "datahub:publish"])
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (same.created, same.added.len(), same.removed.len()),
            (false, 0, 0),
            "{engine:?}"
        );
        let changed = define(&["datahub:publish", "communautes:member"])
            .await
            .unwrap()
            .into_inner();
        assert!(!changed.created, "{engine:?}");
        assert_eq!(changed.added, ["communautes:member"], "{engine:?}");
        assert_eq!(changed.removed, ["datahub:dashboards"], "{engine:?}");
    }
}

#[tokio::test]
async fn an_organisation_update_that_changes_nothing_writes_nothing_and_stray_domains_are_refused()
{
    for engine in ENGINES {
        let w = world(engine).await;
        let t = w.admin_token.clone();
        let update = |r: pb::UpdateOrganisationRequest| {
            w.grpc.update_organisation(bearer(
                &t,
                pb::UpdateOrganisationRequest {
                    id: "ville-de-nancy".into(),
                    ..r
                },
            ))
        };
        // The same values again, spelt as an administrator would type them.
        let same = update(pb::UpdateOrganisationRequest {
            name: Some(" Ville de Nancy ".into()),
            trusted: Some(false),
            email_domains: vec!["@NANCY.fr".into()],
            set_email_domains: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
        assert!(!same.changed, "{engine:?}: the answer says nothing changed");
        assert_eq!(
            same.organisation.unwrap().name,
            "Ville de Nancy",
            "{engine:?}"
        );
        assert_eq!(audit_count(&w, "ville-de-nancy").await, 0, "{engine:?}");

        let err = update(pb::UpdateOrganisationRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            violations(&err)[0],
            (
                "organisation".to_owned(),
                "nothing_to_change: rien à changer : donnez un nom, un SIRET, le statut de \
                 membre ou les domaines"
                    .to_owned()
            ),
            "{engine:?}"
        );
        let err = update(pb::UpdateOrganisationRequest {
            trusted: Some(true),
            email_domains: vec!["mairie-nancy.fr".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
        let fields = violations(&err);
        assert_eq!(fields[0].0, "email_domains", "{engine:?}: {fields:?}");
        assert!(fields[0].1.starts_with("set_email_domains: "), "{fields:?}");
        let orgs = w.workflow.organisations().await.unwrap();
        let org = orgs.iter().find(|o| o.id == "ville-de-nancy").unwrap();
        assert_eq!(org.email_domains, ["nancy.fr"], "{engine:?}");

        let changed = update(pb::UpdateOrganisationRequest {
            name: Some("Ville de Nancy".into()),
            trusted: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
        assert!(changed.changed, "{engine:?}");
        // The audit row tells the change, not the whole record.
        let events = w
            .workflow
            .audit_events(
                &admin(),
                &AuditFilter {
                    subject: "ville-de-nancy".into(),
                    ..AuditFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "{engine:?}");
        assert_eq!(events[0].detail, "trusted: false -> true", "{engine:?}");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_refused_whichever_is_valid() {
    for engine in ENGINES {
        let w = world(engine).await;
        for order in [
            [w.admin_token.as_str(), "forged"],
            ["forged", &w.admin_token],
        ] {
            let mut request = Request::new(pb::ListOrganisationsRequest {});
            for token in order {
                request
                    .metadata_mut()
                    .append("authorization", format!("Bearer {token}").parse().unwrap());
            }
            let err = w.grpc.list_organisations(request).await.unwrap_err();
            assert_eq!(err.code(), Code::Unauthenticated, "{engine:?}: {err:?}");
            assert!(
                err.message().contains("more than one authorization"),
                "{err:?}"
            );
        }
        // One header still works.
        w.grpc
            .list_organisations(bearer(&w.admin_token, pb::ListOrganisationsRequest {}))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_name_that_reads_like_a_directory_name_clashes_and_styled_letters_are_refused() {
    for engine in ENGINES {
        let w = &world(engine).await;
        let create = |name: &str| {
            let new = dge_workflow::organisations::NewOrganisation {
                name: name.into(),
                siret: String::new(),
                trusted: false,
                email_domains: Vec::new(),
            };
            async move { w.workflow.create_organisation(&admin(), &new).await }
        };
        for (name, code) in [
            ("\u{FF36}ille de \u{FF2E}ancy", "taken"),
            ("VilIe de Nancy", "taken"),
            ("Ville-de-Nancy", "taken"),
            ("  Ville   de Nancy.", "taken"),
            ("REGION GRAND EST", "taken"),
            ("R\u{E9}g\u{131}on Grand Est", "taken"),
            ("Ville de \u{274}ancy", "characters"),
            ("Ville de Nanc\u{336}y", "characters"),
            ("R\u{E9}gion Grand Est\u{332}", "characters"),
        ] {
            let err = create(name).await.unwrap_err();
            let dge_workflow::Error::Invalid(v) = err else {
                panic!("{engine:?}: {name:?}: {err:?}");
            };
            let fields: Vec<_> = v.into_iter().map(|f| (f.field, f.code)).collect();
            assert_eq!(fields, [("name", code)], "{engine:?}: {name:?}");
        }
        // Spaces tidied in what is kept.
        let kept = create("  Syndicat   des eaux ").await.unwrap();
        assert_eq!(kept.name, "Syndicat des eaux", "{engine:?}");
    }
}

/// A rejection's reason goes into the person's email: control and invisible
/// characters are refused with the field named, the account stays pending and nobody
/// is emailed; line breaks are welcome.
#[tokio::test]
async fn a_rejection_reason_with_hidden_characters_is_refused() {
    for engine in ENGINES {
        let w = world(engine).await;
        pending(&w, "rjoly").await;
        for hidden in ["Ligne \u{1b}[31m rouge", "abc \u{202e}cba", "a\u{200b}b"] {
            let err = w
                .workflow
                .reject(&admin(), "rjoly", hidden)
                .await
                .unwrap_err();
            let dge_workflow::Error::Invalid(v) = err else {
                panic!("{engine:?}: {hidden:?}: {err:?}");
            };
            let found: Vec<_> = v.iter().map(|x| (x.field, x.code)).collect();
            assert_eq!(found, [("reason", "control_characters")], "{engine:?}");
        }
        let account = find_account(&w.s.db, "rjoly").await.unwrap().unwrap();
        assert_eq!(account.status, AccountStatus::Pending, "{engine:?}");
        let kinds = crate::journey::outbox_kinds(&w.s.db, "rjoly@nancy.fr").await;
        assert!(!kinds.contains(&"account_rejected".to_owned()), "{kinds:?}");
        // In a bulk decision too: the call is refused with the field, nobody decided.
        let err = w
            .grpc
            .decide_accounts(bearer(
                &w.admin_token,
                pb::DecideAccountsRequest {
                    accounts: vec!["rjoly".into()],
                    decision: pb::Decision::Reject as i32,
                    reason: "a\u{1b}[31mb".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{engine:?}: {err:?}");
        assert_eq!(violations(&err)[0].0, "reason", "{engine:?}");
        let account = find_account(&w.s.db, "rjoly").await.unwrap().unwrap();
        assert_eq!(account.status, AccountStatus::Pending, "{engine:?}");
        // A lone carriage return is a line break like any other.
        w.workflow
            .reject(&admin(), "rjoly", "Organisme inconnu.\rÉcrivez-nous.")
            .await
            .unwrap();
        let body: String = sqlx::query_scalar(
            "SELECT body_text FROM outbox WHERE recipient = 'rjoly@nancy.fr' AND kind = 'account_rejected'",
        )
        .fetch_one(w.s.db.pool())
        .await
        .unwrap();
        assert!(
            body.contains("Organisme inconnu.\nÉcrivez-nous.") && !body.contains('\r'),
            "{engine:?}: {body:?}"
        );
    }
}
