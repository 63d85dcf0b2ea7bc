//! `dgectl completion SHELL`.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::CliError;
use crate::output;

/// Writes the completion script for `shell` to standard output.
pub(super) fn print(shell: Shell) -> Result<(), CliError> {
    let script = script(shell);
    output::print_line(script.trim_end())?;
    Ok(())
}

fn script(shell: Shell) -> String {
    // Generated into memory first: clap_complete panics if its writer fails.
    let mut buffer = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dgectl", &mut buffer);
    String::from_utf8_lossy(&buffer).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_name_the_nouns() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = script(shell);
            assert!(script.contains("dgectl"), "{shell}");
            assert!(script.contains("accounts"), "{shell}");
            assert!(script.contains("providers"), "{shell}");
        }
    }
}
