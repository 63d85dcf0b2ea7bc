//! `dgectl orgs list|create|update|accept|merge|import|admins add`.

use std::path::Path;

use dge_proto::v1::{
    AcceptOrganisationRequest, AddOrganisationAdminRequest, CreateOrganisationRequest,
    ImportOrganisationRow, ImportOrganisationsResponse, ListOrganisationsRequest,
    MergeOrganisationRequest, Organisation, UpdateOrganisationRequest,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;

use crate::cli::{OrgAdminsCommand, OrgsCommand, parse_yes_no};
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

pub(super) async fn run(api: &Api, out: OutputFormat, verb: OrgsCommand) -> Result<(), CliError> {
    match verb {
        OrgsCommand::List => list(api, out).await,
        OrgsCommand::Create {
            name,
            siret,
            trusted,
            domains,
        } => {
            let request = CreateOrganisationRequest {
                name,
                siret: siret.unwrap_or_default(),
                trusted,
                email_domains: domains,
            };
            let org = api
                .workflow()
                .create_organisation(request)
                .await
                .map_err(|status| api.fail(status))?
                .into_inner()
                .organisation;
            print_one(out, "created", org.as_ref())
        }
        OrgsCommand::Update {
            id,
            name,
            siret,
            trusted,
            domains,
            no_domains,
        } => {
            let set_email_domains = no_domains || !domains.is_empty();
            let request = UpdateOrganisationRequest {
                id,
                name,
                siret,
                trusted,
                email_domains: domains,
                set_email_domains,
            };
            let answer = api
                .workflow()
                .update_organisation(request)
                .await
                .map_err(|status| api.fail(status))?
                .into_inner();
            if matches!(out, OutputFormat::Json) {
                output::print_json(&json!({
                    "organisation": answer.organisation.as_ref().map(organisation_json),
                    "changed": answer.changed,
                }))?;
                return Ok(());
            }
            let done = if answer.changed {
                "updated"
            } else {
                "unchanged (the values given are the ones it has)"
            };
            print_one(out, done, answer.organisation.as_ref())
        }
        OrgsCommand::Accept { id, name, siret } => {
            let request = AcceptOrganisationRequest {
                id,
                name: name.unwrap_or_default(),
                siret: siret.unwrap_or_default(),
            };
            let org = api
                .workflow()
                .accept_organisation(request)
                .await
                .map_err(|status| api.fail(status))?
                .into_inner()
                .organisation;
            print_one(out, "accepted", org.as_ref())
        }
        OrgsCommand::Merge { source, into, .. } => {
            let request = MergeOrganisationRequest {
                source_id: source.clone(),
                target_id: into.clone(),
            };
            let moved = api
                .workflow()
                .merge_organisation(request)
                .await
                .map_err(|status| api.fail(status))?
                .into_inner()
                .moved_accounts;
            match out {
                OutputFormat::Table => output::print_line(&format!(
                    "merged {source} into {into}: {moved} account(s) moved"
                ))?,
                OutputFormat::Json => output::print_json(&json!({
                    "source_id": source,
                    "target_id": into,
                    "moved_accounts": moved,
                }))?,
            }
            Ok(())
        }
        OrgsCommand::Import { file, skip_invalid } => import(api, out, &file, !skip_invalid).await,
        OrgsCommand::Admins(OrgAdminsCommand::Add { login }) => {
            api.workflow()
                .add_organisation_admin(AddOrganisationAdminRequest {
                    account: login.clone(),
                })
                .await
                .map_err(|status| api.fail(status))?;
            match out {
                OutputFormat::Table => output::print_line(&format!(
                    "{login} now administers the members of their organisation"
                ))?,
                OutputFormat::Json => {
                    output::print_json(&json!({ "account": login, "organisation_admin": true }))?;
                }
            }
            Ok(())
        }
    }
}

async fn list(api: &Api, out: OutputFormat) -> Result<(), CliError> {
    let organisations = api
        .workflow()
        .list_organisations(ListOrganisationsRequest {})
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .organisations;
    match out {
        OutputFormat::Table => {
            let mut table =
                output::table(["ID", "NAME", "SIRET", "TRUSTED", "STATUS", "EMAIL DOMAINS"]);
            for org in &organisations {
                table.add_row([
                    org.id.clone(),
                    org.name.clone(),
                    org.siret.clone(),
                    output::yes_no(org.trusted).to_owned(),
                    org.status.clone(),
                    org.email_domains.join(", "),
                ]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let organisations: Vec<Value> = organisations.iter().map(organisation_json).collect();
            output::print_json(&json!({ "organisations": organisations }))?;
        }
    }
    Ok(())
}

/// One organisation returned by a call, after "<verb> <id>" in table mode.
fn print_one(out: OutputFormat, done: &str, org: Option<&Organisation>) -> Result<(), CliError> {
    match out {
        OutputFormat::Table => {
            let Some(org) = org else { return Ok(()) };
            output::print_line(&format!("organisation {} {done}", org.id))?;
            let mut table = output::table(["FIELD", "VALUE"]);
            for (field, value) in [
                ("ID", org.id.clone()),
                ("NAME", org.name.clone()),
                ("SIRET", org.siret.clone()),
                ("TRUSTED", output::yes_no(org.trusted).to_owned()),
                ("STATUS", org.status.clone()),
                ("EMAIL DOMAINS", org.email_domains.join(", ")),
            ] {
                table.add_row([field.to_owned(), value]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            output::print_json(&json!({ "organisation": org.map(organisation_json) }))?;
        }
    }
    Ok(())
}

fn organisation_json(org: &Organisation) -> Value {
    json!({
        "id": org.id,
        "name": org.name,
        "siret": org.siret,
        "trusted": org.trusted,
        "status": org.status,
        "email_domains": org.email_domains,
    })
}

/// A CSV line the tool itself could not read: reported with the server's rejections.
#[derive(Debug, PartialEq, Eq)]
struct Unreadable {
    line: u32,
    reason: String,
}

/// Reads the CSV file: a header naming the columns `name` (required), `siret`,
/// `trusted`, `email_domains` in any order, then one organisation per line.
fn read_csv(
    text: &str,
    strict: bool,
) -> Result<(Vec<ImportOrganisationRow>, Vec<Unreadable>), CliError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|err| CliError::Usage(format!("cannot read the CSV header: {err}")))?
        .clone();
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(name_at) = column("name") else {
        return Err(CliError::Usage(
            "the CSV header must name a `name` column (and optionally siret, trusted, email_domains)"
                .to_owned(),
        ));
    };
    let (siret_at, trusted_at, domains_at) =
        (column("siret"), column("trusted"), column("email_domains"));
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                let line = err.position().map_or(0, |p| line_at(text, p));
                unreadable.push(Unreadable {
                    line,
                    reason: format!("illisible : {err}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| line_at(text, p));
        if record.iter().all(str::is_empty) {
            continue;
        }
        // More fields than columns: a comma left unquoted in a name or between
        // domains, and what follows it would be lost without a word.
        if record.len() > header.len() {
            unreadable.push(Unreadable {
                line,
                reason: format!(
                    "{} champs pour {} colonnes : mettez entre guillemets un nom qui contient \
                     une virgule, et séparez les domaines par des espaces",
                    record.len(),
                    header.len()
                ),
            });
            continue;
        }
        let field = |at: Option<usize>| at.and_then(|i| record.get(i)).unwrap_or("").to_owned();
        let Ok(trusted) = parse_yes_no(&field(trusted_at)) else {
            unreadable.push(Unreadable {
                line,
                reason: "trusted : oui/non, yes/no, true/false ou 1/0 attendu".to_owned(),
            });
            continue;
        };
        rows.push(ImportOrganisationRow {
            line,
            name: field(Some(name_at)),
            siret: field(siret_at),
            trusted,
            email_domains: field(domains_at)
                .split([' ', ';', ','])
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect(),
            strict,
        });
    }
    Ok((rows, unreadable))
}

/// The line number (from 1) where a record starts. The reader's own count
/// places a record that follows blank lines on the first blank one.
fn line_at(text: &str, position: &csv::Position) -> u32 {
    let start = usize::try_from(position.byte())
        .unwrap_or(usize::MAX)
        .min(text.len());
    let blank = text.as_bytes()[start..]
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let newlines = text.as_bytes()[..start + blank]
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
}

/// Streams the file to `ImportOrganisations` with a progress bar on standard error.
///
/// The server writes nothing before the stream ends, and then writes in one
/// transaction: an interrupted import leaves the directory as it was.
async fn import(api: &Api, out: OutputFormat, file: &Path, strict: bool) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|err| CliError::Usage(format!("cannot read {}: {err}", file.display())))?;
    let (rows, unreadable) = read_csv(&text, strict)?;
    if strict && !unreadable.is_empty() {
        // Nothing is sent: the import would be cancelled anyway. The server has
        // no dry run, so the other lines are not checked until these are fixed.
        if out == OutputFormat::Table {
            output::print_line("(the other lines are checked once these are fixed)")?;
        }
        let report = ImportOrganisationsResponse::default();
        return print_report(out, file, &report, &unreadable);
    }
    let total = u64::try_from(rows.len()).unwrap_or(u64::MAX);
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} lines")
            .map_err(|err| CliError::Usage(err.to_string()))?
            .progress_chars("=> "),
    );
    bar.set_message("sending");
    let sent = bar.clone();
    let stream = tokio_stream::iter(rows).map(move |row| {
        sent.inc(1);
        row
    });
    let outcome = api.workflow().import_organisations(stream).await;
    bar.finish_and_clear();
    let report = outcome.map_err(|status| api.fail(status))?.into_inner();
    print_report(out, file, &report, &unreadable)
}

/// The report: counts, then one line per rejected CSV line, lowest first.
fn print_report(
    out: OutputFormat,
    file: &Path,
    report: &ImportOrganisationsResponse,
    unreadable: &[Unreadable],
) -> Result<(), CliError> {
    let mut rejected: Vec<(u32, String)> = unreadable
        .iter()
        .map(|u| (u.line, u.reason.clone()))
        .chain(report.rejected.iter().map(|r| (r.line, r.reason.clone())))
        .collect();
    rejected.sort();
    let committed = report.committed;
    match out {
        OutputFormat::Table => {
            if committed {
                output::print_line(&format!(
                    "{}: {} imported, {} unchanged (SIRET already known), {} rejected",
                    file.display(),
                    report.imported,
                    report.unchanged,
                    rejected.len()
                ))?;
            } else {
                output::print_line(&format!(
                    "{}: nothing imported, {} line(s) rejected (fix them, or use --skip-invalid)",
                    file.display(),
                    rejected.len()
                ))?;
            }
            if !rejected.is_empty() {
                let mut table = output::table(["LINE", "REASON"]);
                for (line, reason) in &rejected {
                    table.add_row([line.to_string(), reason.clone()]);
                }
                output::print_table(&table)?;
            }
        }
        OutputFormat::Json => {
            let rows: Vec<Value> = rejected
                .iter()
                .map(|(line, reason)| json!({ "line": line, "reason": reason }))
                .collect();
            output::print_json(&json!({
                "imported": if committed { report.imported } else { 0 },
                "unchanged": if committed { report.unchanged } else { 0 },
                "rejected": rows,
                "committed": committed,
            }))?;
        }
    }
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(CliError::Partial(format!(
            "{} line(s) of {} rejected",
            rejected.len(),
            file.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_are_found_by_name() {
        let text = "siret;name\n";
        assert!(
            read_csv(text, true).is_err(),
            "no name column with , separator"
        );
        let text = "Name,trusted,SIRET,email_domains\n\
                    \"Ville de Metz, mairie\",oui,21570463000019,metz.fr mairie-metz.fr\n\
                    \n\
                    Commune de Sélestat,peut-être,,\n\
                    ATMO,0,82064707200017,\n\
                    Ville de Lunéville,,non,luneville.fr,mairie-luneville.fr\n";
        let (rows, unreadable) = read_csv(text, false).expect("header");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].name, "Ville de Metz, mairie");
        assert!(rows[0].trusted);
        assert_eq!(rows[0].siret, "21570463000019");
        assert_eq!(rows[0].email_domains, ["metz.fr", "mairie-metz.fr"]);
        assert!(!rows[0].strict);
        assert_eq!(rows[1].line, 5);
        assert!(!rows[1].trusted);
        assert_eq!(unreadable.len(), 2, "{unreadable:?}");
        assert_eq!(
            unreadable[0],
            Unreadable {
                line: 4,
                reason: "trusted : oui/non, yes/no, true/false ou 1/0 attendu".to_owned()
            }
        );
        assert_eq!(unreadable[1].line, 6);
        assert!(
            unreadable[1].reason.starts_with("5 champs pour 4 colonnes"),
            "{unreadable:?}"
        );
    }
}
