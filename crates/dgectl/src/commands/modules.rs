//! `dgectl modules list|declare`.

use dge_proto::v1::{DeclareModuleRequest, ListModulesRequest, Module};
use serde_json::{Value, json};

use crate::cli::ModulesCommand;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

pub(super) async fn run(
    api: &Api,
    out: OutputFormat,
    verb: ModulesCommand,
) -> Result<(), CliError> {
    match verb {
        ModulesCommand::List => list(api, out).await,
        ModulesCommand::Declare { name, label } => {
            api.workflow()
                .declare_module(DeclareModuleRequest {
                    name: name.clone(),
                    label: label.unwrap_or_default(),
                })
                .await
                .map_err(|status| api.fail(status))?;
            match out {
                OutputFormat::Table => output::print_line(&format!("module {name} declared"))?,
                OutputFormat::Json => output::print_json(&json!({ "module": name }))?,
            }
            Ok(())
        }
    }
}

async fn list(api: &Api, out: OutputFormat) -> Result<(), CliError> {
    let modules = api
        .workflow()
        .list_modules(ListModulesRequest {})
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .modules;
    match out {
        OutputFormat::Table => output::print_table(&modules_table(&modules))?,
        OutputFormat::Json => {
            let modules: Vec<Value> = modules.iter().map(module_json).collect();
            output::print_json(&json!({ "modules": modules }))?;
        }
    }
    Ok(())
}

/// One row per right; a module that declares none gets one row with `-`.
fn modules_table(modules: &[Module]) -> comfy_table::Table {
    let mut table = output::table(["MODULE", "RIGHT", "LABEL"]);
    for module in modules {
        if module.rights.is_empty() {
            table.add_row([module.name.as_str(), "-", module.label.as_str()]);
        }
        for right in &module.rights {
            table.add_row([
                module.name.as_str(),
                right.name.as_str(),
                right.label.as_str(),
            ]);
        }
    }
    table
}

fn module_json(module: &Module) -> Value {
    let rights: Vec<Value> = module
        .rights
        .iter()
        .map(|right| json!({ "name": right.name, "label": right.label }))
        .collect();
    json!({ "name": module.name, "label": module.label, "rights": rights })
}

#[cfg(test)]
mod tests {
    use dge_proto::v1::Right;

    use super::*;

    #[test]
    fn every_right_gets_a_row() {
        let modules = [
            Module {
                name: "datahub".to_owned(),
                label: "DataHub".to_owned(),
                rights: vec![
                    Right {
                        name: "datahub:publish".to_owned(),
                        label: "Publier".to_owned(),
                    },
                    Right {
                        name: "datahub:dashboards".to_owned(),
                        label: "Tableaux de bord".to_owned(),
                    },
                ],
            },
            Module {
                name: "vide".to_owned(),
                label: "Sans droits".to_owned(),
                rights: vec![],
            },
        ];
        let text = modules_table(&modules).trim_fmt();
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("datahub  datahub:dashboards  Tableaux de bord"));
        assert!(text.contains("vide     -                   Sans droits"));
        assert_eq!(
            module_json(&modules[0])["rights"][0]["name"],
            "datahub:publish"
        );
    }
}
