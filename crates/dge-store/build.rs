//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the folders
//! at compile time but does not tell cargo to watch them.

#![allow(clippy::print_stdout)]

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
