//! Issue 4: trusted path, the pending queue, delegated administrators, the
//! directory, role bundles, expiring grants, the change stream, notices and audit.

use dge_registry::AccountStatus;
use dge_workflow::Actor;
use dge_workflow::notify::{NoticeMode, NotifySettings};
use dge_workflow::organisations::NewOrganisation;
use dge_workflow::queue::PendingFilter;
use dge_workflow::rights::AuditFilter;
use dge_workflow::rights::GrantOutcome;
use sqlx::Row;

use crate::backends::{ENGINES, NOW, Services, services};
use crate::journey::{admin, confirmation_token, form, outbox_kinds};

async fn signed_up(
    s: &Services,
    login: &str,
    email: &str,
    organisation: &str,
    confirm: bool,
) -> String {
    let mut f = form(login, email);
    f.organisation_id = organisation.into();
    f.description = format!("Je souhaite rejoindre l'espace de {login}");
    s.registry.sign_up(&f).await.expect("sign-up");
    let key = email.to_lowercase();
    if confirm {
        let token = confirmation_token(&s.db, &email_as_stored(email)).await;
        s.registry.confirm_email(&token).await.expect("confirm");
    }
    key
}

fn email_as_stored(email: &str) -> String {
    let (local, domain) = email.split_once('@').expect("address");
    format!("{local}@{}", domain.to_lowercase())
}

async fn status(s: &Services, login: &str) -> AccountStatus {
    dge_registry::store::find_account(&s.db, login)
        .await
        .unwrap()
        .expect("account")
        .status
}

async fn holds(s: &Services, login: &str, right: &str) -> bool {
    let a = dge_registry::store::find_account(&s.db, login)
        .await
        .unwrap()
        .expect("account");
    dge_authz::rights::has_right(&s.db, &a.id, right, s.registry.now())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_trusted_path_needs_a_trusted_organisation_and_one_of_its_domains() {
    for engine in ENGINES {
        let s = services(engine).await;
        signed_up(&s, "agent", "agent@grandest.fr", "region-grand-est", true).await;
        signed_up(
            &s,
            "sub",
            "x@services.grandest.fr",
            "region-grand-est",
            true,
        )
        .await;
        signed_up(
            &s,
            "lookalike",
            "x@grandest.fr.example.com",
            "region-grand-est",
            true,
        )
        .await;
        signed_up(&s, "prefix", "x@evilgrandest.fr", "region-grand-est", true).await;
        signed_up(&s, "untrusted", "x@nancy.fr", "ville-de-nancy", true).await;
        assert_eq!(
            status(&s, "agent").await,
            AccountStatus::Active,
            "{engine:?}"
        );
        assert_eq!(status(&s, "sub").await, AccountStatus::Active, "{engine:?}");
        for login in ["lookalike", "prefix", "untrusted"] {
            assert_eq!(
                status(&s, login).await,
                AccountStatus::Pending,
                "{login} on {engine:?}"
            );
        }
        assert!(holds(&s, "agent", "communautes:member").await);
        assert!(
            !holds(&s, "agent", "datahub:publish").await,
            "data rights still wait for an administrator"
        );
        assert_eq!(
            outbox_kinds(&s.db, "agent@grandest.fr").await,
            ["confirm_email", "account_activated"]
        );
    }
}

#[tokio::test]
async fn the_pending_queue_filters_and_pages_oldest_first() {
    for engine in ENGINES {
        let s = services(engine).await;
        for (i, login) in ["alice", "bruno", "chloe", "denis", "emma"]
            .iter()
            .enumerate()
        {
            signed_up(
                &s,
                login,
                &format!("{login}@exemple.fr"),
                if i % 2 == 0 {
                    "ville-de-nancy"
                } else {
                    "region-grand-est"
                },
                true,
            )
            .await;
            s.clock.advance(100);
        }
        let a = admin();
        let (page1, next) = s
            .workflow
            .pending(&a, &PendingFilter::default(), 2, "")
            .await
            .unwrap();
        let (page2, next2) = s
            .workflow
            .pending(&a, &PendingFilter::default(), 2, &next)
            .await
            .unwrap();
        let (page3, next3) = s
            .workflow
            .pending(&a, &PendingFilter::default(), 2, &next2)
            .await
            .unwrap();
        let logins = |p: &[dge_registry::Account]| {
            p.iter()
                .map(|x| x.login.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(logins(&page1), ["alice", "bruno"], "{engine:?}");
        assert_eq!(logins(&page2), ["chloe", "denis"]);
        assert_eq!(logins(&page3), ["emma"]);
        assert!(next3.is_empty());

        let trusted = PendingFilter {
            trusted: Some(true),
            ..PendingFilter::default()
        };
        assert_eq!(
            logins(&s.workflow.pending(&a, &trusted, 10, "").await.unwrap().0),
            ["bruno", "denis"]
        );
        let text = PendingFilter {
            text: Some("ESPACE DE CHLOE".into()),
            ..PendingFilter::default()
        };
        assert_eq!(
            logins(&s.workflow.pending(&a, &text, 10, "").await.unwrap().0),
            ["chloe"]
        );
        // A text past its limit is a field error, not a storage failure.
        let huge = PendingFilter {
            text: Some("x".repeat(50_001)),
            ..PendingFilter::default()
        };
        match s.workflow.pending(&a, &huge, 10, "").await {
            Err(dge_workflow::Error::Invalid(v)) => {
                let codes: Vec<_> = v.iter().map(|x| (x.field, x.code)).collect();
                assert_eq!(codes, [("text", "too_long")], "{engine:?}");
            }
            other => panic!("{engine:?}: {other:?}"),
        }
        let old = PendingFilter {
            min_age_secs: 250,
            ..PendingFilter::default()
        };
        assert_eq!(
            logins(&s.workflow.pending(&a, &old, 10, "").await.unwrap().0),
            ["alice", "bruno", "chloe"]
        );
        assert!(
            s.workflow
                .pending(&a, &PendingFilter::default(), 2, "garbage!")
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn a_delegated_administrator_acts_on_their_organisation_only() {
    for engine in ENGINES {
        let s = services(engine).await;
        signed_up(&s, "chef", "chef@nancy.fr", "ville-de-nancy", true).await;
        s.workflow.approve(&admin(), "chef", &[]).await.unwrap();
        s.workflow
            .add_organisation_admin(&admin(), "chef")
            .await
            .unwrap();
        signed_up(
            &s,
            "colleague",
            "colleague@nancy.fr",
            "ville-de-nancy",
            true,
        )
        .await;
        signed_up(
            &s,
            "stranger",
            "stranger@exemple.fr",
            "region-grand-est",
            true,
        )
        .await;

        let chef_id = dge_registry::store::find_account(&s.db, "chef")
            .await
            .unwrap()
            .unwrap()
            .id;
        crate::backends::enrol_mfa(&s.db, &chef_id).await;
        let caller = dge_authz::Caller::Account {
            id: chef_id.clone(),
            client_id: "dgectl".into(),
            admin: false,
            mfa_missing: false,
        };
        let delegated = Actor::of(&s.db, &caller)
            .await
            .expect("an organisation administrator");
        // The same person's token held by a module gives no delegated power.
        let through_module = dge_authz::Caller::Account {
            id: chef_id,
            client_id: "datahub".into(),
            admin: false,
            mfa_missing: false,
        };
        assert!(
            matches!(
                Actor::of(&s.db, &through_module).await,
                Err(dge_workflow::Error::NotAllowed)
            ),
            "{engine:?}"
        );
        let visible = s
            .workflow
            .pending(&delegated, &PendingFilter::default(), 10, "")
            .await
            .unwrap()
            .0;
        assert_eq!(
            visible
                .iter()
                .map(|a| a.login.clone().unwrap())
                .collect::<Vec<_>>(),
            ["colleague"],
            "{engine:?}"
        );

        s.workflow
            .approve(&delegated, "colleague", &["datahub:dashboards".to_owned()])
            .await
            .expect("own member");
        assert!(holds(&s, "colleague", "datahub:dashboards").await);
        assert!(matches!(
            s.workflow.approve(&delegated, "stranger", &[]).await,
            Err(dge_workflow::Error::AccountNotFound)
        ));
        assert!(matches!(
            s.workflow
                .grant(&delegated, "stranger", "datahub:publish", "", None)
                .await,
            Err(dge_workflow::Error::AccountNotFound)
        ));
        assert_eq!(status(&s, "stranger").await, AccountStatus::Pending);
        let new = NewOrganisation {
            name: "Autre".into(),
            ..NewOrganisation::default()
        };
        assert!(matches!(
            s.workflow.create_organisation(&delegated, &new).await,
            Err(dge_workflow::Error::NotAllowed)
        ));

        let nobody = dge_authz::Caller::Account {
            id: "someone".into(),
            client_id: "datahub".into(),
            admin: false,
            mfa_missing: false,
        };
        assert!(matches!(
            Actor::of(&s.db, &nobody).await,
            Err(dge_workflow::Error::NotAllowed)
        ));
    }
}

#[tokio::test]
async fn proposed_organisations_are_accepted_or_merged() {
    for engine in ENGINES {
        let s = services(engine).await;
        let mut f = form("maire", "maire@village.fr");
        f.organisation_id = String::new();
        f.proposed_organisation = "Mairie de Villé".into();
        s.registry.sign_up(&f).await.unwrap();
        let mut g = form("adjoint", "adjoint@village.fr");
        g.organisation_id = String::new();
        // Another spelling of the same town hall, in other words: a second proposal, for
        // the team to merge (one spelt alike would have joined the first).
        g.proposed_organisation = "Mairie du village de Villé".into();
        s.registry.sign_up(&g).await.unwrap();
        let proposed: Vec<_> = s
            .workflow
            .organisations()
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.status == "proposed")
            .collect();
        assert_eq!(proposed.len(), 2, "{engine:?}");
        let (first, second) = (&proposed[0], &proposed[1]);

        let bad = s
            .workflow
            .accept_organisation(&admin(), &first.id, "Commune de Villé", "21670482500018")
            .await;
        assert!(
            matches!(bad, Err(dge_workflow::Error::Invalid(_))),
            "bad SIRET refused"
        );
        let accepted = s
            .workflow
            .accept_organisation(&admin(), &first.id, "Commune de Villé", "216 704 825 00019")
            .await
            .unwrap();
        assert_eq!(
            (
                accepted.status.as_str(),
                accepted.name.as_str(),
                accepted.siret.as_str()
            ),
            ("active", "Commune de Villé", "21670482500019")
        );

        let moved = s
            .workflow
            .merge_organisation(&admin(), &second.id, &first.id)
            .await
            .unwrap();
        assert_eq!(moved, 1);
        let adjoint = dge_registry::store::find_account(&s.db, "adjoint")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(adjoint.organisation_id.as_deref(), Some(first.id.as_str()));
        assert!(
            s.workflow
                .merge_organisation(&admin(), &first.id, "ville-de-nancy")
                .await
                .is_err(),
            "an active one cannot be merged away"
        );
        let events = s
            .workflow
            .audit_events(
                &admin(),
                &AuditFilter {
                    subject: first.id.clone(),
                    ..AuditFilter::default()
                },
            )
            .await
            .unwrap();
        let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
        assert!(
            actions.contains(&"organisation.accepted") && actions.contains(&"organisation.merged"),
            "{actions:?}"
        );
    }
}

fn row(line: u32, name: &str, siret: &str) -> (u32, NewOrganisation) {
    (
        line,
        NewOrganisation {
            name: name.into(),
            siret: siret.into(),
            trusted: false,
            email_domains: vec![format!("ligne{line}.exemple.fr")],
        },
    )
}

/// One name, one set of domains per organisation of the directory, and no public
/// mail service as an organisation's domain.
#[tokio::test]
async fn the_directory_refuses_a_second_name_or_domain_and_public_mail_domains() {
    for engine in ENGINES {
        let s = services(engine).await;
        let org = |name: &str, domains: &[&str], trusted: bool| NewOrganisation {
            name: name.into(),
            siret: String::new(),
            trusted,
            email_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        };
        let refusal = |r: dge_workflow::Result<dge_proto::v1::Organisation>| match r {
            Err(dge_workflow::Error::Invalid(v)) => v
                .iter()
                .map(|v| (v.field, v.code, v.message.clone()))
                .collect::<Vec<_>>(),
            other => panic!("{engine:?}: expected a refusal, got {other:?}"),
        };
        let metz = s
            .workflow
            .create_organisation(&admin(), &org("Ville de Metz", &["metz.fr"], true))
            .await
            .unwrap();
        assert_eq!(
            refusal(
                s.workflow
                    .create_organisation(
                        &admin(),
                        &org("VILLE DE METZ", &["mairie-metz.fr"], false)
                    )
                    .await
            ),
            [(
                "name",
                "taken",
                "un organisme de l'annuaire porte déjà ce nom : Ville de Metz".to_owned()
            )]
        );
        for same in ["Ville  de Metz", "\u{FF36}ille de Metz", " ville de  METZ "] {
            assert_eq!(
                refusal(
                    s.workflow
                        .create_organisation(&admin(), &org(same, &[], false))
                        .await
                )[0]
                .1,
                "taken",
                "{engine:?}: {same:?}"
            );
        }
        assert_eq!(
            refusal(
                s.workflow
                    .create_organisation(&admin(), &org("Metz Métropole", &["metz.fr"], false))
                    .await
            ),
            [(
                "email_domains",
                "taken",
                "le domaine metz.fr est déjà celui de l'organisme Ville de Metz".to_owned()
            )]
        );
        let gmail = refusal(
            s.workflow
                .create_organisation(&admin(), &org("Métropole", &["Gmail.com"], true))
                .await,
        );
        assert_eq!(
            gmail.iter().map(|v| (v.0, v.1)).collect::<Vec<_>>(),
            [("email_domains", "public_mail")]
        );
        // Every problem at once: a bad SIRET does not hide a domain already taken.
        let mut all = org("Metz Métropole", &["metz.fr", "gmail.com"], false);
        all.siret = "21670482500018".into();
        assert_eq!(
            refusal(s.workflow.create_organisation(&admin(), &all).await)
                .iter()
                .map(|v| (v.0, v.1))
                .collect::<Vec<_>>(),
            [
                ("siret", "invalid"),
                ("email_domains", "public_mail"),
                ("email_domains", "taken")
            ],
            "{engine:?}"
        );
        let other = s
            .workflow
            .create_organisation(
                &admin(),
                &org("Metz Métropole", &["metzmetropole.fr"], false),
            )
            .await
            .unwrap();
        // Changing one organisation keeps its own name and domains, not another's.
        s.workflow
            .update_organisation(&admin(), &metz.id, None, None, Some(false), None)
            .await
            .unwrap();
        let taken = s
            .workflow
            .update_organisation(
                &admin(),
                &other.id,
                Some("ville de metz".into()),
                None,
                None,
                None,
            )
            .await
            .map(|(organisation, _)| organisation);
        assert_eq!(refusal(taken)[0].1, "taken");
        // An import refuses the line, as it refuses a duplicate SIRET.
        let report = s
            .workflow
            .import_organisations(
                &admin(),
                &[
                    (2, org("Ville de Metz", &[], false)),
                    (3, org("Commune neuve", &["neuve.fr"], false)),
                    (4, org("Commune voisine", &["neuve.fr"], false)),
                ],
                false,
            )
            .await
            .unwrap();
        assert_eq!(report.imported, 1, "{engine:?}: {report:?}");
        assert_eq!(
            report.rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
            [2, 4]
        );
        // A line with several problems names them all.
        let mut all = org("VILLE DE METZ", &["metz.fr", "mail.gmail.com"], false);
        all.siret = "123".into();
        let report = s
            .workflow
            .import_organisations(&admin(), &[(2, all)], false)
            .await
            .unwrap();
        let reason = &report.rejected[0].1;
        for part in [
            "SIRET",
            "messagerie ouverte à tous",
            "porte déjà ce nom",
            "le domaine metz.fr est déjà celui",
        ] {
            assert!(reason.contains(part), "{engine:?}: {part} in {reason}");
        }
        assert_eq!(
            s.workflow
                .organisations()
                .await
                .unwrap()
                .iter()
                .filter(|o| o.name.to_lowercase() == "ville de metz")
                .count(),
            1
        );
    }
}

#[tokio::test]
async fn an_import_reports_rejected_lines_and_strict_writes_nothing() {
    for engine in ENGINES {
        let s = services(engine).await;
        let rows = vec![
            row(2, "Ville de Strasbourg", "21670482500019"),
            row(3, "", "13002526500013"),
            row(4, "Doublon", "21670482500019"),
            row(5, "Clé fausse", "13002526500012"),
            row(6, "Déjà là", "21540395700016"),
            row(7, "Sans SIRET", ""),
        ];
        let count = |s: &Services| {
            let db = s.db.clone();
            async move {
                sqlx::query("SELECT COUNT(*) AS n FROM organisations")
                    .fetch_one(db.pool())
                    .await
                    .unwrap()
                    .get::<i64, _>("n")
            }
        };
        let before = count(&s).await;
        let strict = s
            .workflow
            .import_organisations(&admin(), &rows, true)
            .await
            .unwrap();
        assert!(!strict.committed);
        assert_eq!(
            count(&s).await,
            before,
            "strict import with errors writes nothing on {engine:?}"
        );
        let report = s
            .workflow
            .import_organisations(&admin(), &rows, false)
            .await
            .unwrap();
        assert!(report.committed);
        assert_eq!((report.imported, report.unchanged), (2, 1));
        assert_eq!(
            report.rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(count(&s).await, before + 2);
    }
}

#[tokio::test]
async fn roles_expiring_grants_and_the_change_stream() {
    for engine in ENGINES {
        let s = services(engine).await;
        signed_up(&s, "cmartin", "cmartin@nancy.fr", "ville-de-nancy", true).await;
        s.workflow.approve(&admin(), "cmartin", &[]).await.unwrap();
        let mut watch = s.workflow.watch();

        s.workflow
            .declare_right(&admin(), "datahub:harvest", "Moissonner")
            .await
            .unwrap();
        assert!(
            s.workflow
                .declare_right(&admin(), "inconnu:x", "X")
                .await
                .is_err(),
            "unknown module"
        );
        s.workflow
            .define_role(
                &admin(),
                "producteur",
                "Producteur de données",
                &["datahub:publish".into(), "datahub:harvest".into()],
            )
            .await
            .unwrap();
        let granted = s
            .workflow
            .grant_role(&admin(), "cmartin", "producteur", "convention 2027")
            .await
            .unwrap();
        assert_eq!(
            granted,
            ["datahub:harvest", "datahub:publish"],
            "{engine:?}"
        );
        assert!(holds(&s, "cmartin", "datahub:harvest").await);
        let unknown = s
            .workflow
            .grant_role(&admin(), "cmartin", "inconnu", "")
            .await;
        assert!(
            matches!(unknown, Err(dge_workflow::Error::RoleNotFound)),
            "{unknown:?}"
        );
        let hidden = s
            .workflow
            .declare_module(&admin(), "cartes", "abc\u{202e}def")
            .await;
        assert!(
            matches!(&hidden, Err(dge_workflow::Error::Invalid(v)) if v.iter().any(|v| v.code == "control_characters")),
            "{hidden:?}"
        );
        let piled = s
            .workflow
            .declare_module(&admin(), "cartes", "Cx\u{301}\u{302}\u{303}\u{304}rtes")
            .await;
        assert!(
            matches!(&piled, Err(dge_workflow::Error::Invalid(v)) if v.iter().any(|v| v.code == "combining_marks")),
            "{piled:?}"
        );

        let change = watch.recv().await.unwrap();
        assert_eq!(
            (change.right.as_str(), change.granted),
            ("datahub:harvest", true)
        );

        let until = NOW + 3600;
        assert_eq!(
            s.workflow
                .grant(
                    &admin(),
                    "cmartin",
                    "datahub:dashboards",
                    "essai",
                    Some(until)
                )
                .await
                .unwrap(),
            GrantOutcome::Granted
        );
        let past = s
            .workflow
            .grant(&admin(), "cmartin", "datahub:publish", "", Some(NOW - 1))
            .await;
        assert!(
            matches!(past, Err(dge_workflow::Error::Invalid(_))),
            "an end date in the past is refused"
        );
        assert!(holds(&s, "cmartin", "datahub:dashboards").await);
        s.clock.advance(3601);
        assert!(
            !holds(&s, "cmartin", "datahub:dashboards").await,
            "expired grants no longer count"
        );

        // An ended grant is given again, and streamed as a grant.
        let mut rx = s.workflow.watch();
        let again = NOW + 3601 + 3600;
        assert_eq!(
            s.workflow
                .grant(
                    &admin(),
                    "cmartin",
                    "datahub:dashboards",
                    "retour",
                    Some(again)
                )
                .await
                .unwrap(),
            GrantOutcome::Granted,
            "{engine:?}: a right whose end has passed can be granted again"
        );
        assert!(holds(&s, "cmartin", "datahub:dashboards").await);
        let change = rx.try_recv().expect("the new grant is streamed");
        assert_eq!(
            (change.right.as_str(), change.granted),
            ("datahub:dashboards", true)
        );
        // Its end can be moved, or lifted, by granting it again; the same end is a no-op.
        let later = again + 7200;
        for (end, outcome) in [
            (Some(later), GrantOutcome::EndChanged),
            (Some(later), GrantOutcome::AlreadyHeld),
            (None, GrantOutcome::EndChanged),
        ] {
            assert_eq!(
                s.workflow
                    .grant(&admin(), "cmartin", "datahub:dashboards", "", end)
                    .await
                    .unwrap(),
                outcome,
                "{engine:?}: {end:?}"
            );
        }
        s.clock.advance(7200 + 3600);
        assert!(
            holds(&s, "cmartin", "datahub:dashboards").await,
            "{engine:?}: the end was lifted"
        );
        let changes: Vec<String> = sqlx::query_scalar(
            "SELECT detail FROM audit_events WHERE action = 'right.end_changed' ORDER BY created_at, id",
        )
        .fetch_all(s.db.pool())
        .await
        .unwrap();
        assert_eq!(changes.len(), 2, "{engine:?}: {changes:?}");
        assert_eq!(
            changes[1],
            format!("datahub:dashboards until=none was={later}")
        );
        // No end further than five years ahead.
        let far = NOW + 6 * 365 * 24 * 3600;
        let refused = s
            .workflow
            .grant(&admin(), "cmartin", "datahub:publish", "", Some(far))
            .await;
        assert!(
            matches!(&refused, Err(dge_workflow::Error::Invalid(v)) if v.message_for("expires_at").is_some()),
            "{refused:?}"
        );
        let grants = s.workflow.grants(&admin(), "cmartin").await.unwrap();
        let dash = grants
            .iter()
            .find(|g| g.right == "datahub:dashboards")
            .unwrap();
        assert_eq!(
            (
                dash.expires_at,
                dash.reason.as_str(),
                dash.granted_by.as_str()
            ),
            (None, "retour", "token:test"),
            "{engine:?}: the reason of the grant is kept when its end changes without one"
        );

        assert!(
            s.workflow
                .revoke(&admin(), "cmartin", "datahub:publish")
                .await
                .unwrap()
        );
        let mut last = None;
        while let Ok(c) = watch.try_recv() {
            last = Some(c);
        }
        let last = last.expect("changes streamed");
        assert_eq!(
            (last.right.as_str(), last.granted),
            ("datahub:publish", false)
        );

        // The audit log is searched by login as by id; a period that ends before it
        // starts is refused rather than answered with nothing.
        let by_login = s
            .workflow
            .audit_events(
                &admin(),
                &AuditFilter {
                    subject: "cmartin".into(),
                    ..AuditFilter::default()
                },
            )
            .await
            .unwrap();
        let actions: Vec<_> = by_login.iter().map(|e| e.action.as_str()).collect();
        assert!(
            actions.contains(&"right.granted") && actions.contains(&"right.end_changed"),
            "{engine:?}: {actions:?}"
        );
        let inverted = s
            .workflow
            .audit_events(
                &admin(),
                &AuditFilter {
                    since: NOW + 10,
                    until: NOW,
                    ..AuditFilter::default()
                },
            )
            .await;
        assert!(
            matches!(&inverted, Err(dge_workflow::Error::Invalid(v)) if v.message_for("until").is_some()),
            "{inverted:?}"
        );
    }
}

#[tokio::test]
async fn administrators_are_told_once_and_reminded_later() {
    for engine in ENGINES {
        let s = services(engine).await;
        let settings = NotifySettings {
            admin_emails: vec!["equipe@datagrandest.fr".into()],
            mode: NoticeMode::PerSignup,
            reminder_after_secs: 3 * 86_400,
        };
        signed_up(&s, "unconfirmed", "u@nancy.fr", "ville-de-nancy", false).await;
        signed_up(&s, "cmartin", "cmartin@nancy.fr", "ville-de-nancy", true).await;
        assert_eq!(
            s.workflow.notify_admins(&settings).await.unwrap(),
            1,
            "{engine:?}"
        );
        assert_eq!(
            s.workflow.notify_admins(&settings).await.unwrap(),
            0,
            "no second notice"
        );
        s.clock.advance(3 * 86_400);
        assert_eq!(
            s.workflow.notify_admins(&settings).await.unwrap(),
            1,
            "reminder after the delay"
        );
        assert_eq!(
            s.workflow.notify_admins(&settings).await.unwrap(),
            0,
            "not twice in a row"
        );
        assert_eq!(
            outbox_kinds(&s.db, "equipe@datagrandest.fr").await,
            ["admin_signup_notice", "admin_pending_reminder"]
        );
        let body: String =
            sqlx::query("SELECT body_text FROM outbox WHERE kind = 'admin_signup_notice'")
                .fetch_one(s.db.pool())
                .await
                .unwrap()
                .get("body_text");
        assert!(
            body.contains("Je souhaite rejoindre l'espace de cmartin"),
            "the person's request is shown"
        );

        let digest = NotifySettings {
            mode: NoticeMode::DailyDigest { hour_utc: 0 },
            ..settings.clone()
        };
        signed_up(&s, "bruno", "bruno@nancy.fr", "ville-de-nancy", true).await;
        signed_up(&s, "chloe", "chloe@nancy.fr", "ville-de-nancy", true).await;
        assert_eq!(
            s.workflow.notify_admins(&digest).await.unwrap(),
            1,
            "one digest for two sign-ups"
        );
        assert_eq!(s.workflow.notify_admins(&digest).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn a_bulk_decision_reports_each_account() {
    for engine in ENGINES {
        let s = services(engine).await;
        signed_up(&s, "alice", "alice@nancy.fr", "ville-de-nancy", true).await;
        signed_up(&s, "bruno", "bruno@nancy.fr", "ville-de-nancy", false).await;
        let results = s
            .workflow
            .decide_many(
                &admin(),
                &[
                    "alice".into(),
                    "bruno".into(),
                    "nobody".into(),
                    " alice".into(),
                    "ALICE".into(),
                    "Alice@Nancy.fr".into(),
                ],
                true,
                "",
            )
            .await;
        // Named four ways, alice is decided and answered once.
        let oks: Vec<(&str, bool)> = results
            .iter()
            .map(|r| (r.0.as_str(), r.1.is_ok()))
            .collect();
        assert_eq!(
            oks,
            [("alice", true), ("bruno", false), ("nobody", false)],
            "{engine:?}"
        );
        assert_eq!(status(&s, "alice").await, AccountStatus::Active);
        assert_eq!(status(&s, "bruno").await, AccountStatus::Unconfirmed);
    }
}

/// The (field, code) pairs of a refused call.
fn refusal<T: std::fmt::Debug>(r: dge_workflow::Result<T>) -> Vec<(&'static str, &'static str)> {
    match r {
        Err(dge_workflow::Error::Invalid(v)) => v.iter().map(|x| (x.field, x.code)).collect(),
        other => panic!("expected a field violation, got {other:?}"),
    }
}

#[tokio::test]
async fn a_grant_needs_a_confirmed_account_a_future_end_and_a_bounded_reason() {
    for engine in ENGINES {
        let s = services(engine).await;
        signed_up(&s, "unconf", "unconf@nancy.fr", "ville-de-nancy", false).await;
        signed_up(&s, "pending", "pending@nancy.fr", "ville-de-nancy", true).await;
        signed_up(&s, "refused", "refused@nancy.fr", "ville-de-nancy", true).await;
        s.workflow
            .reject(&admin(), "refused", "hors périmètre")
            .await
            .unwrap();
        let grant = |who: &'static str, reason: String, until: Option<i64>| {
            let w = s.workflow.clone();
            async move {
                w.grant(&admin(), who, "datahub:publish", &reason, until)
                    .await
            }
        };
        assert_eq!(
            refusal(grant("unconf", String::new(), None).await),
            [("account", "unconfirmed")],
            "{engine:?}"
        );
        assert_eq!(
            refusal(grant("refused", String::new(), None).await),
            [("account", "rejected")]
        );
        assert_eq!(
            refusal(grant("pending", String::new(), Some(NOW - 1)).await),
            [("expires_at", "in_the_past")]
        );
        assert_eq!(
            refusal(grant("pending", "x".repeat(100_000), None).await),
            [("reason", "too_long")]
        );
        assert_eq!(
            refusal(grant("pending", "ligne\u{0}cachée".into(), None).await),
            [("reason", "control_characters")]
        );
        assert!(
            !holds(&s, "pending", "datahub:publish").await,
            "nothing granted"
        );
        assert!(!holds(&s, "unconf", "datahub:publish").await);
        // A confirmed, pending account may be granted while it waits for approval,
        // with a reason of exactly the limit.
        assert_eq!(
            grant("pending", "é".repeat(1000), Some(NOW + 60))
                .await
                .unwrap(),
            GrantOutcome::Granted,
            "{engine:?}"
        );
        assert!(holds(&s, "pending", "datahub:publish").await);
        assert_eq!(
            refusal(
                s.workflow
                    .grant_role(&admin(), "unconf", "producteur", "")
                    .await
            ),
            [("account", "unconfirmed")]
        );
    }
}

#[tokio::test]
async fn a_label_is_optional_and_declaring_again_without_one_keeps_it() {
    for engine in ENGINES {
        let s = services(engine).await;
        let labels = |modules: &[dge_proto::v1::Module]| -> Vec<(String, String)> {
            modules
                .iter()
                .filter(|m| m.name == "cartes")
                .flat_map(|m| {
                    std::iter::once((m.name.clone(), m.label.clone()))
                        .chain(m.rights.iter().map(|r| (r.name.clone(), r.label.clone())))
                })
                .collect()
        };
        // Without a label, a new entry is named after itself.
        s.workflow
            .declare_module(&admin(), "cartes", "")
            .await
            .unwrap();
        s.workflow
            .declare_right(&admin(), "cartes:editer", " ")
            .await
            .unwrap();
        assert_eq!(
            labels(&s.workflow.modules().await.unwrap()),
            [
                ("cartes".to_owned(), "cartes".to_owned()),
                ("cartes:editer".to_owned(), "cartes:editer".to_owned())
            ],
            "{engine:?}"
        );
        // A label given replaces it; declaring again without one keeps it.
        s.workflow
            .declare_module(&admin(), "cartes", "Cartes")
            .await
            .unwrap();
        s.workflow
            .declare_right(&admin(), "cartes:editer", "Éditer les cartes")
            .await
            .unwrap();
        s.workflow
            .declare_module(&admin(), "cartes", "")
            .await
            .unwrap();
        s.workflow
            .declare_right(&admin(), "cartes:editer", "")
            .await
            .unwrap();
        assert_eq!(
            labels(&s.workflow.modules().await.unwrap()),
            [
                ("cartes".to_owned(), "Cartes".to_owned()),
                ("cartes:editer".to_owned(), "Éditer les cartes".to_owned())
            ],
            "{engine:?}"
        );
        // Roles too; a label given is still checked.
        s.workflow
            .define_role(&admin(), "cartographe", "", &["cartes:editer".into()])
            .await
            .unwrap();
        assert_eq!(
            refusal(
                s.workflow
                    .define_role(
                        &admin(),
                        "cartographe",
                        &"x".repeat(201),
                        &["cartes:editer".into()]
                    )
                    .await
            ),
            [("label", "invalid")]
        );
    }
}
